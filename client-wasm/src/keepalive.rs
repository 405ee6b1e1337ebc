//! Objects that hold DOM listeners, timers or sockets stay alive until their `destroy()`,
//! like their JavaScript counterparts: a page that drops its handle (`new PresenceList(…)`
//! without keeping the result) must not leave listeners calling into freed memory.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    static LIVE: RefCell<Vec<Rc<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `value` alive until [`release`] is called with it.
pub(crate) fn hold<T: Any>(value: &Rc<T>) {
    LIVE.with(|live| live.borrow_mut().push(value.clone() as Rc<dyn Any>));
}

/// Lets `value` go (it is freed once the page drops its handle too).
pub(crate) fn release<T: Any>(value: &Rc<T>) {
    let ptr = Rc::as_ptr(value) as *const ();
    LIVE.with(|live| {
        live.borrow_mut()
            .retain(|v| Rc::as_ptr(v) as *const () != ptr)
    });
}
