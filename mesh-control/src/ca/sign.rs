//! Workload certificates: reading a CSR's public key, and the fixed shape of every leaf.
//!
//! A CSR contributes its public key and nothing else. Its signature is checked (proof of
//! possession), its key must be ECDSA P-256, and its subject and requested extensions are
//! ignored — the leaf is built from scratch: the authenticated identity as the only URI
//! SAN, `serverAuth` + `clientAuth`, `digitalSignature`, `CA:FALSE`, a random serial.
//! (x509-parser reads the CSR rather than rcgen's `CertificateSigningRequestParams`, which
//! refuses CSRs with extensions it does not know; we ignore them all anyway.)

use std::time::SystemTime;

use mesh_api::spiffe::SpiffeId;
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
    SubjectPublicKeyInfo,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use super::material::{CLOCK_SKEW, random_serial, to_offset};
use super::{Error, SignError};

/// The public key of a DER PKCS#10 CSR, after checking its self-signature and that it is
/// ECDSA P-256.
pub(crate) fn csr_public_key(der: &[u8]) -> Result<SubjectPublicKeyInfo, SignError> {
    if der.is_empty() {
        return Err(SignError::Csr(
            "the CSR is empty: send a DER-encoded PKCS#10 request".into(),
        ));
    }
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| {
        SignError::Csr(format!(
            "the CSR is not DER-encoded PKCS#10 ({e}); PEM must be decoded first"
        ))
    })?;
    if !rest.is_empty() {
        return Err(SignError::Csr(format!(
            "the CSR has {} trailing bytes after the request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|e| {
        SignError::Csr(format!(
            "the CSR's signature does not verify with its own public key ({e})"
        ))
    })?;
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY
        || curve.as_ref() != Some(&OID_EC_P256)
    {
        return Err(SignError::Csr(format!(
            "the CSR's key is {} (curve {}); mesh certificates use ECDSA P-256 keys",
            spki.algorithm.algorithm,
            curve.map_or_else(|| "none".to_owned(), |c| c.to_id_string()),
        )));
    }
    SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|e| SignError::Csr(format!("the CSR's public key is unusable: {e}")))
}

/// The parameters of a workload leaf for `identity` (plus `dns` names, for mesh-control's
/// own serving certificate and `ca issue --dns`), valid from `now` minus the clock skew
/// allowance to `not_after`.
pub(crate) fn leaf_params(
    identity: &SpiffeId,
    dns: &[String],
    now: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    // The identity is the URI SAN; the subject stays empty (SAN then marked critical).
    params.distinguished_name = DistinguishedName::new();
    let uri = identity
        .as_str()
        .to_owned()
        .try_into()
        .map_err(|e| Error::Crypto(format!("identity {identity} is not an IA5 string: {e}")))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    for name in dns {
        let dns = name
            .clone()
            .try_into()
            .map_err(|e| Error::Crypto(format!("DNS name {name:?} is not an IA5 string: {e}")))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = to_offset(now - CLOCK_SKEW);
    params.not_after = to_offset(not_after);
    Ok(params)
}
