//! Edit logs and their replay across replicas under adversarial delivery.

pub mod log;
pub mod replay;

pub use log::{EditLog, LoggedOp, Op, MAP_ROOT, TEXT_ROOT};
pub use replay::{Cluster, Delivery, Divergence, Schedule, Step};
