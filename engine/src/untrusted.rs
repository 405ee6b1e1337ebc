//! Decoding yrs structures from bytes a peer sent. yrs trusts the counts at the start of a
//! state vector or an update: a few bytes claiming billions of entries make it reserve (and,
//! for hash maps, initialise) memory in proportion before it notices the bytes are not
//! there, and some malformed input trips assertions in its decoder. Both are stopped here,
//! before anything is changed: counts are checked against the bytes that could hold them,
//! and a decoder panic is contained and reported as a decode error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::encoding::read::{Cursor, Error, Read};
use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

/// Each state-vector entry is a client id and a clock, one byte each at least.
const MIN_SV_ENTRY: usize = 2;
/// Each client section of an update holds a struct count, a client id and a clock.
const MIN_CLIENT_SECTION: usize = 3;
/// Each struct is an info byte at least.
const MIN_STRUCT: usize = 1;

/// Reads the leading count of `bytes` and refuses it if `bytes` cannot hold that many
/// entries of `min` bytes each. Returns the cursor after the count.
fn plausible_count(cur: &mut Cursor<'_>, total: usize, min: usize) -> Result<u64, Error> {
    let count: u64 = cur.read_var()?;
    let left = total.saturating_sub(cur.next);
    if count.saturating_mul(min as u64) > left as u64 {
        return Err(Error::EndOfBuffer(count.saturating_mul(min as u64) as usize));
    }
    Ok(count)
}

fn contained<T>(decode: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or(Err(Error::UnexpectedValue))
}

/// A v1 state vector from untrusted bytes.
pub fn state_vector_v1(bytes: &[u8]) -> Result<StateVector, Error> {
    let mut cur = Cursor::new(bytes);
    plausible_count(&mut cur, bytes.len(), MIN_SV_ENTRY)?;
    contained(|| StateVector::decode_v1(bytes))
}

/// A v1 update from untrusted bytes.
pub fn update_v1(bytes: &[u8]) -> Result<Update, Error> {
    let mut cur = Cursor::new(bytes);
    let clients = plausible_count(&mut cur, bytes.len(), MIN_CLIENT_SECTION)?;
    if clients > 0 {
        plausible_count(&mut cur, bytes.len(), MIN_STRUCT)?;
    }
    contained(|| Update::decode_v1(bytes))
}

/// A v2 update from untrusted bytes (the v2 layout has no leading count to check).
pub fn update_v2(bytes: &[u8]) -> Result<Update, Error> {
    contained(|| Update::decode_v2(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the bytes cannot hold are refused before yrs sees them; real data passes.
    #[test]
    fn lying_counts_are_refused_and_real_data_passes() {
        // a state vector claiming 2^28 entries in 3 bytes
        assert!(state_vector_v1(&[0x80, 0x80, 0x80, 0x80, 0x01, 0x03]).is_err());
        // an update claiming 2^28 clients
        assert!(update_v1(&[0x80, 0x80, 0x80, 0x80, 0x01, 0x03, 0x00]).is_err());
        // one client claiming 2^28 structs
        assert!(update_v1(&[1, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 0]).is_err());
        use yrs::updates::encoder::Encode;
        use yrs::{ReadTxn, Text, Transact};
        let doc = yrs::Doc::new();
        doc.get_or_insert_text("t")
            .insert(&mut doc.transact_mut(), 0, "hello");
        let txn = doc.transact();
        assert!(state_vector_v1(&txn.state_vector().encode_v1()).is_ok());
        assert!(update_v1(&txn.encode_state_as_update_v1(&StateVector::default())).is_ok());
        assert!(update_v1(&[0, 0]).is_ok());
        assert!(state_vector_v1(&[0]).is_ok());
    }

    /// The frame the hostile-frame fuzzer found: a client id beyond 53 bits makes yrs'
    /// state-vector decoder assert; here it is an error.
    #[test]
    fn a_decoder_panic_is_an_error() {
        assert!(state_vector_v1(&[1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0]).is_err());
    }
}
