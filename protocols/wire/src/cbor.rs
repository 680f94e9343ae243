//! Canonical CBOR.
//!
//! Values are encoded with cbor4ii through serde. Structs must declare their fields in the order
//! they are to appear; that order is the canonical one for that type. [`decode`] enforces a size
//! cap *before* parsing and then re-encodes the value and compares bytes, so trailing data,
//! non-minimal integers, indefinite lengths or reordered fields are all refused: one value, one
//! byte string. That is what makes "verify the signature over the bytes, then decode" safe.

use serde::{Serialize, de::DeserializeOwned};

/// Why a byte string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the decoder accepts.
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The input is not CBOR of the expected shape.
    #[error("malformed cbor: {0}")]
    Malformed(String),
    /// The input decodes, but is not the canonical encoding of what it decodes to.
    #[error("cbor is not in canonical form")]
    NotCanonical,
}

/// Encodes `value` canonically.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail; serialisation of our own types cannot fail either (no maps
    // with non-string keys, no custom Serialize that errors). Keep it infallible for callers.
    cbor4ii::serde::to_vec(Vec::new(), value).unwrap_or_default()
}

/// Decodes `bytes` as a `T`, refusing anything over `max` bytes or not canonical.
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let value: T =
        cbor4ii::serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if encode(&value) != bytes {
        return Err(DecodeError::NotCanonical);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Sample {
        a: u64,
        b: String,
        #[serde(with = "serde_bytes")]
        c: Vec<u8>,
    }

    #[test]
    fn round_trip_and_caps() {
        let s = Sample {
            a: 7,
            b: "x".into(),
            c: vec![1, 2, 3],
        };
        let bytes = encode(&s);
        assert_eq!(decode::<Sample>(&bytes, 1024).unwrap(), s);
        assert_eq!(
            decode::<Sample>(&bytes, 3),
            Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: 3
            })
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Sample {
            a: 1,
            b: String::new(),
            c: vec![],
        });
        bytes.push(0);
        assert!(decode::<Sample>(&bytes, 1024).is_err());
    }

    #[test]
    fn non_minimal_integer_is_refused() {
        // {"a": 1 as a 2-byte uint, "b": "", "c": h''}
        let mut bytes = vec![0xa3, 0x61, b'a', 0x19, 0x00, 0x01];
        bytes.extend_from_slice(&[0x61, b'b', 0x60, 0x61, b'c', 0x40]);
        assert_eq!(
            decode::<Sample>(&bytes, 1024),
            Err(DecodeError::NotCanonical)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(&bytes, 128);
        }

        #[test]
        fn encode_decode_identity(a in any::<u64>(), b in ".{0,20}", c in proptest::collection::vec(any::<u8>(), 0..40)) {
            let s = Sample { a, b, c };
            prop_assert_eq!(decode::<Sample>(&encode(&s), 4096).unwrap(), s);
        }
    }
}
