//! RSA-SHA256 (PKCS#1 v1.5) signatures as WeChat Pay uses them, on `ring`'s
//! constant-time RSA: the merchant's private key signs requests and `paySign`; WeChat
//! Pay's public key verifies notifications and API answers. Throwaway key pairs (the
//! demo's WeChat Pay, the tests) come from AWS-LC, since ring cannot generate RSA keys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// A key that does not parse. Never carries the key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM PKCS#8 RSA private key")]
    Private,
    #[error("not a PEM RSA public key (SubjectPublicKeyInfo)")]
    Public,
    #[error("cannot generate an RSA key pair")]
    Generate,
}

/// A new 2048-bit RSA key pair, as PEM text in the shapes the keys above read and WeChat
/// Pay hands out.
pub struct PemKeyPair {
    /// `-----BEGIN PRIVATE KEY-----` (PKCS#8).
    pub private: String,
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    pub public: String,
}

impl PemKeyPair {
    /// Generates a throwaway key pair with AWS-LC (ring has no RSA key generation; the
    /// RustCrypto `rsa` crate, which has, carries RUSTSEC-2023-0071 and is kept out of
    /// the binary). Only key generation uses AWS-LC: signing and verifying stay on ring.
    pub fn generate() -> Result<Self, KeyError> {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;

        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let private: Pkcs8V1Der = pair.as_der().map_err(|_| KeyError::Generate)?;
        let public: PublicKeyX509Der =
            pair.public_key().as_der().map_err(|_| KeyError::Generate)?;
        Ok(Self {
            private: pem("PRIVATE KEY", private.as_ref()),
            public: pem("PUBLIC KEY", public.as_ref()),
        })
    }
}

/// RFC 7468 text: base64 in lines of 64 characters between the labelled boundaries.
fn pem(label: &str, der: &[u8]) -> String {
    let body = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for (i, c) in body.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    out.push_str(&format!("\n-----END {label}-----\n"));
    out
}

/// A private key that signs.
pub struct SigningKey {
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl SigningKey {
    /// From `-----BEGIN PRIVATE KEY-----` (PKCS#8) text.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| KeyError::Private)?;
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| KeyError::Private)?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// The base64 RSA-SHA256 (PKCS#1 v1.5) signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            // Only a wrongly sized buffer fails, and it is sized from the key.
            .expect("an RSA signature into a buffer of the modulus' size");
        B64.encode(signature)
    }
}

/// A public key that verifies (2048 to 8192 bits).
pub struct VerifyingKey {
    key: UnparsedPublicKey<Vec<u8>>,
}

impl VerifyingKey {
    /// From `-----BEGIN PUBLIC KEY-----` text, as WeChat Pay hands out its key.
    pub fn from_public_key_pem(pem: &str) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::Public)?;
        let rsa = rsa_public_key(&spki).ok_or(KeyError::Public)?;
        Ok(Self {
            key: UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa.to_vec()),
        })
    }

    /// Whether `signature_b64` is a valid signature of `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        // A 8192-bit signature is 1,368 characters of base64; refuse longer before decoding.
        if signature_b64.len() > 1400 {
            return false;
        }
        match B64.decode(signature_b64) {
            Ok(signature) => self.key.verify(message, &signature).is_ok(),
            Err(_) => false,
        }
    }
}

/// The DER `RSAPublicKey` inside a `SubjectPublicKeyInfo` whose algorithm is
/// rsaEncryption; `None` for anything else.
fn rsa_public_key(spki: &[u8]) -> Option<&[u8]> {
    /// AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
    const RSA_ALGORITHM: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let (body, rest) = der_element(spki, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (algorithm, body) = der_element(body, 0x30)?;
    if algorithm != RSA_ALGORITHM {
        return None;
    }
    let (bits, rest) = der_element(body, 0x03)?;
    if !rest.is_empty() {
        return None;
    }
    // No unused bits in a key's bit string.
    match bits.split_first() {
        Some((0, key)) if !key.is_empty() => Some(key),
        _ => None,
    }
}

/// Splits one DER element with `tag` off the front of `input`: its contents and what
/// follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, input) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || input.len() < octets {
            return None;
        }
        let (digits, after) = input.split_at(octets);
        input = after;
        digits
            .iter()
            .fold(0usize, |len, &d| (len << 8) | usize::from(d))
    };
    if input.len() < len {
        return None;
    }
    Some(input.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walking_refuses_what_is_not_an_rsa_key() {
        assert_eq!(rsa_public_key(&[]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x81]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x02, 0x30, 0x00]), None);
        // An EC key's SPKI (id-ecPublicKey) is not taken for RSA.
        let ec = [
            0x30, 0x13, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x03,
            0x06, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04,
        ];
        assert_eq!(rsa_public_key(&ec), None);
        // A well-formed wrapper gives back its contents.
        let mut ok = vec![0x30, 0x13, 0x30, 0x0d];
        ok.extend_from_slice(&[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ]);
        ok.extend_from_slice(&[0x03, 0x02, 0x00, 0x42]);
        assert_eq!(rsa_public_key(&ok), Some(&[0x42][..]));
    }

    #[test]
    fn junk_keys_are_refused_without_echoing_them() {
        assert_eq!(
            SigningKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            )
            .err(),
            Some(KeyError::Private)
        );
        assert_eq!(
            VerifyingKey::from_public_key_pem("not pem").err(),
            Some(KeyError::Public)
        );
    }
}

/// Checked against AWS-LC, a second implementation: what one signs the other verifies,
/// and the generated PEM text reads in both.
#[cfg(test)]
mod cross_check {
    use super::*;
    use aws_lc_rs::rand::SystemRandom as TheirRandom;
    use aws_lc_rs::signature::{
        KeyPair as _, RsaKeyPair as TheirKeyPair, UnparsedPublicKey as TheirPublicKey,
        RSA_PKCS1_2048_8192_SHA256 as THEIR_VERIFY, RSA_PKCS1_SHA256 as THEIR_SIGN,
    };

    #[test]
    fn signatures_agree_with_another_implementation() {
        let pems = PemKeyPair::generate().unwrap();
        assert!(pems.private.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pems.public.ends_with("\n-----END PUBLIC KEY-----\n"));
        assert!(pems.private.lines().all(|l| l.len() <= 64));
        let signing = SigningKey::from_pkcs8_pem(&pems.private).unwrap();
        let verifying = VerifyingKey::from_public_key_pem(&pems.public).unwrap();
        let der = PrivatePkcs8KeyDer::from_pem_slice(pems.private.as_bytes()).unwrap();
        let theirs = TheirKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let their_public = TheirPublicKey::new(&THEIR_VERIFY, theirs.public_key().as_ref());
        let message = b"1700000000\nnonce\n{\"prepay_id\":\"wx1\"}\n";

        // Ours signs, theirs verifies.
        let ours = B64.decode(signing.sign(message)).unwrap();
        their_public.verify(message, &ours).unwrap();
        // Theirs signs, ours verifies; a changed message or signature does not.
        let mut signature = vec![0; theirs.public_modulus_len()];
        theirs
            .sign(&THEIR_SIGN, &TheirRandom::new(), message, &mut signature)
            .unwrap();
        let theirs = B64.encode(&signature);
        assert!(verifying.verify(message, &theirs));
        assert!(!verifying.verify(b"other", &theirs));
        let mut bent = B64.decode(&theirs).unwrap();
        bent[10] ^= 1;
        assert!(!verifying.verify(message, &B64.encode(bent)));
        assert!(!verifying.verify(message, "not base64!"));
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let text = pem("X", &[0xab; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN X-----"));
        assert_eq!(lines.last(), Some(&"-----END X-----"));
        // 100 bytes are 136 characters of base64: 64, 64 and 8.
        let widths: Vec<usize> = lines[1..lines.len() - 1].iter().map(|l| l.len()).collect();
        assert_eq!(widths, [64, 64, 8]);
    }
}
