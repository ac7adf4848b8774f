//! Hashes and encodings: `sha1`, `sha256`, `sha512`, `md5`,
//! `base64encode`, `base64decode`.

use base64::Engine as _;
use sha2::Digest as _;

use super::{Args, Def, FilterFn, def};
use crate::eval::Renderer;
use crate::value::Value;

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def("sha1", &[], |_, v, _| {
        hash(&v, |b| sha1::Sha1::digest(b).to_vec())
    }),
    def("sha256", &[], |_, v, _| {
        hash(&v, |b| sha2::Sha256::digest(b).to_vec())
    }),
    def("sha512", &[], |_, v, _| {
        hash(&v, |b| sha2::Sha512::digest(b).to_vec())
    }),
    def("md5", &[], |_, v, _| {
        hash(&v, |b| md5::Md5::digest(b).to_vec())
    }),
    def("base64encode", &[], base64_encode),
    def("base64decode", &[], base64_decode),
];

fn hash(v: &Value, f: impl Fn(&[u8]) -> Vec<u8>) -> Result<Value, String> {
    let Value::String(s) = v else {
        return Err("Need a string to hash".into());
    };
    Ok(Value::from(
        f(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ))
}

fn base64_encode(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    let Value::String(s) = &v else {
        return Err("base64encode needs a string".into());
    };
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
    ))
}

fn base64_decode(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    let Value::String(s) = &v else {
        return Err("base64decode needs a string".into());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| "the decoded bytes are not UTF-8 text".into())
}
