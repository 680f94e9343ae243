//! The `profile` namespace's DHT validator.

use leafnet_wire::{
    Validated,
    key::{self, RecordError},
};

use crate::{AccountId, SignedProfile, record::MAX_SIZE};

/// Validates `/leafnet/profile/<account id>` records.
#[derive(Debug, Default, Clone, Copy)]
pub struct Validator;

impl key::Validator for Validator {
    fn namespace(&self) -> &'static str {
        "profile"
    }
    fn accepts_records(&self) -> bool {
        true
    }
    fn accepts_providers(&self) -> bool {
        false
    }
    fn max_value_len(&self) -> usize {
        MAX_SIZE
    }
    fn validate(&self, rest: &str, value: &[u8], now_ms: u64) -> Result<Validated, RecordError> {
        let account = AccountId::parse(rest).map_err(|e| RecordError::Invalid(e.to_string()))?;
        let p = SignedProfile::open(value, now_ms).map_err(|e| match e {
            crate::ProfileError::Expired => RecordError::Expired,
            other => RecordError::Invalid(other.to_string()),
        })?;
        if p.profile.account != account.0 {
            return Err(RecordError::Invalid("key does not match the signer".into()));
        }
        Ok(Validated {
            seq: p.profile.seq,
            expires_at_ms: p.profile.expires_at_ms,
        })
    }
    fn check_update(
        &self,
        _rest: &str,
        old: &[u8],
        new: &[u8],
        now_ms: u64,
    ) -> Result<(), RecordError> {
        let (Ok(old), Ok(new)) = (
            SignedProfile::open(old, now_ms),
            SignedProfile::open(new, now_ms),
        ) else {
            return Ok(());
        };
        if old.profile.kind != new.profile.kind {
            return Err(RecordError::Invalid(format!(
                "kind is fixed at creation ({} → {})",
                old.profile.kind.as_str(),
                new.profile.kind.as_str()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use leafnet_wire::key::{RecordError, Registry};

    use crate::{Kind, record::tests::sample};

    #[test]
    fn dht_rules() {
        let mut reg = Registry::default();
        reg.register(super::Validator);
        let k = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let key = format!(
            "/leafnet/profile/{}",
            hex::encode(k.verifying_key().to_bytes())
        );
        let v1 = sample(&k, 1, 10_000).seal(&k).bytes;
        let v2 = sample(&k, 2, 10_000).seal(&k).bytes;
        assert_eq!(
            reg.check_record(key.as_bytes(), &v1, None, 5).unwrap().seq,
            1
        );
        assert!(matches!(
            reg.check_record(key.as_bytes(), &v1, Some(&v2), 5),
            Err(RecordError::Rollback { .. })
        ));
        // wrong key: other's profile under k's key
        let ov = sample(&other, 3, 10_000).seal(&other).bytes;
        assert!(matches!(
            reg.check_record(key.as_bytes(), &ov, None, 5),
            Err(RecordError::Invalid(_))
        ));
        // kind change refused
        let mut obj = sample(&k, 3, 10_000);
        obj.kind = Kind::Object;
        assert!(matches!(
            reg.check_record(key.as_bytes(), &obj.seal(&k).bytes, Some(&v2), 5),
            Err(RecordError::Invalid(_))
        ));
        assert_eq!(
            reg.check_record(key.as_bytes(), &v2, None, 20_000),
            Err(RecordError::Expired)
        );
        assert!(matches!(
            reg.check_record(key.as_bytes(), &vec![0; 5000], None, 5),
            Err(RecordError::TooLarge { .. })
        ));
    }
}
