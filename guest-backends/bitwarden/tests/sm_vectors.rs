//! Bitwarden's published Secrets Manager vectors (`tests/data/README.md`): the SDK's
//! access-token unit test, and the login payload and secrets of the SDK's mock and fake
//! servers, decrypted to the plaintexts the vendor's own tests assert.

use std::path::Path;

use bitwarden::crypto::{AccessToken, CryptoError, EncString, decrypt_org_key};
use serde_json::Value;

fn vectors() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sm-vectors.json");
    let text = std::fs::read_to_string(&path).expect("vector file");
    serde_json::from_str(&text).expect("vector JSON")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in vectors"))
}

#[test]
fn access_token_derives_the_sdk_key() {
    let v = vectors();
    let token = AccessToken::parse(s(&v, "access_token")).expect("vendor token parses");
    assert_eq!(token.access_token_id, s(&v, "access_token_id"));
    assert_eq!(token.client_secret.as_str(), s(&v, "client_secret"));
    assert_eq!(token.encryption_key.to_base64().as_str(), s(&v, "derived_key_b64"));
}

#[test]
fn malformed_tokens_are_refused_like_the_sdk() {
    let v = vectors();
    let good = s(&v, "access_token");
    // The SDK's `malformed_tokens` cases: no padding is fine; wrong version, wrong
    // separators, missing version are not.
    assert!(AccessToken::parse(good.trim_end_matches('=')).is_ok());
    for bad in [
        good.replacen("0.", "1.", 1),
        good.replace(':', "."),
        good.split_once('.').map(|(_, rest)| rest.to_string()).unwrap_or_default(),
        good.replace("X8vbvA0bduihIDe/qrzIQQ==", "X8vbvA0b"),
    ] {
        assert!(matches!(AccessToken::parse(&bad), Err(CryptoError::MalformedToken(_))), "{bad}");
    }
}

#[test]
fn login_payload_and_secrets_decrypt_to_the_vendor_plaintexts() {
    let v = vectors();
    let token = AccessToken::parse(s(&v, "access_token")).expect("token");
    let org = decrypt_org_key(s(&v, "encrypted_payload"), &token.encryption_key).expect("org key");
    let secrets = v["secrets"].as_array().expect("secrets");
    for secret in secrets {
        for (field, expected) in secret["expected"].as_object().expect("expected") {
            let enc = EncString::parse(s(secret, field)).expect("EncString");
            let plain = enc.decrypt_to_string(&org).expect("decrypts");
            assert_eq!(plain.as_str(), expected.as_str().expect("text"), "{}: {field}", s(secret, "id"));
        }
    }
}

#[test]
fn a_tampered_mac_or_ciphertext_is_refused_before_decryption() {
    let v = vectors();
    let token = AccessToken::parse(s(&v, "access_token")).expect("token");
    let org = decrypt_org_key(s(&v, "encrypted_payload"), &token.encryption_key).expect("org key");
    let original = s(&v["secrets"][0], "value");
    let (head, mac) = original.rsplit_once('|').expect("three parts");

    // Flip one bit of the MAC.
    let mut mac_bytes = base64_decode(mac);
    mac_bytes[0] ^= 1;
    let tampered = format!("{head}|{}", base64_encode(&mac_bytes));
    let enc = EncString::parse(&tampered).expect("still well-formed");
    assert_eq!(enc.decrypt(&org).err(), Some(CryptoError::MacMismatch));

    // Flip one bit of the ciphertext, keeping the MAC.
    let (iv, ct) = head.split_once('|').expect("iv|ct");
    let mut ct_bytes = base64_decode(ct);
    ct_bytes[0] ^= 0x80;
    let tampered = format!("{iv}|{}|{mac}", base64_encode(&ct_bytes));
    let enc = EncString::parse(&tampered).expect("still well-formed");
    assert_eq!(enc.decrypt(&org).err(), Some(CryptoError::MacMismatch));

    // The right ciphertext under the wrong key (the access token's, not the org's).
    let enc = EncString::parse(original).expect("EncString");
    assert_eq!(enc.decrypt(&token.encryption_key).err(), Some(CryptoError::MacMismatch));

    // The login payload with a tampered MAC cannot yield an organisation key.
    let payload = s(&v, "encrypted_payload");
    let (phead, pmac) = payload.rsplit_once('|').expect("parts");
    let mut pmac = base64_decode(pmac);
    pmac[31] ^= 0x01;
    let tampered = format!("{phead}|{}", base64_encode(&pmac));
    assert_eq!(decrypt_org_key(&tampered, &token.encryption_key).err(), Some(CryptoError::MacMismatch));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).expect("base64")
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
