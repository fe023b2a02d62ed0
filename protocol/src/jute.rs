//! Jute's binary primitives, in one place, and the `Encode`/`Decode` traits every record implements.
//!
//! Wire rules (`org.apache.jute.BinaryOutputArchive`):
//! - `int` and `long` are big-endian two's complement, 4 and 8 bytes.
//! - `boolean` is one byte, 0 or 1. Java reads any non-zero byte as true; Volery rejects anything
//!   but 0 and 1 as `DecodeError::InvalidBool`.
//! - `buffer` and `ustring` are an `int` length then that many bytes; length -1 is null. A `ustring`
//!   must be UTF-8.
//! - `vector` is an `int` count then the items; count -1 is null.
//!
//! Decoders are nom `complete` parsers over a whole frame body: running short is
//! `DecodeError::Truncated`, never "incomplete". Every length is checked against the bytes left
//! before anything is allocated, so a huge or negative length cannot allocate or panic.

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_i32, be_i64, be_u8};
use nom::Parser;

use crate::error::DecodeError;

/// A nom result over a body, with `DecodeError` as the error.
pub type JResult<'a, T> = nom::IResult<&'a [u8], T, DecodeError>;

/// Writes a record in jute's binary form.
pub trait Encode {
    /// Appends the record to `out`.
    fn encode(&self, out: &mut BytesMut);
    /// The exact number of bytes `encode` appends.
    fn encoded_len(&self) -> usize;
}

/// Reads a record in jute's binary form from the front of `input`.
pub trait Decode: Sized {
    fn decode(input: &[u8]) -> JResult<'_, Self>;
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut BytesMut) {
        (**self).encode(out)
    }
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
}

/// A header followed by its body, e.g. `(RequestHeader, Request)` or `(ReplyHeader, Response)`.
impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, out: &mut BytesMut) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn encoded_len(&self) -> usize {
        self.0.encoded_len() + self.1.encoded_len()
    }
}

/// `None` writes nothing: an error reply's missing body.
impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut BytesMut) {
        if let Some(v) = self {
            v.encode(out)
        }
    }
    fn encoded_len(&self) -> usize {
        self.as_ref().map_or(0, Encode::encoded_len)
    }
}

/// Decodes one record that must fill `body` exactly.
pub fn decode_record<T: Decode>(body: &[u8]) -> Result<T, DecodeError> {
    let (rest, v) = T::decode(body).map_err(into_error)?;
    finish(rest)?;
    Ok(v)
}

/// `Ok` if nothing is left of the body.
pub fn finish(rest: &[u8]) -> Result<(), DecodeError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes(rest.len()))
    }
}

/// Unwraps a nom error. `complete` parsers never return `Incomplete`; it maps to `Truncated`.
pub fn into_error(e: nom::Err<DecodeError>) -> DecodeError {
    match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        nom::Err::Incomplete(_) => DecodeError::Truncated,
    }
}

/// A parse failure with a typed cause.
pub fn fail<T>(e: DecodeError) -> JResult<'static, T> {
    Err(nom::Err::Failure(e))
}

pub fn int(i: &[u8]) -> JResult<'_, i32> {
    be_i32(i)
}

pub fn long(i: &[u8]) -> JResult<'_, i64> {
    be_i64(i)
}

pub fn boolean(i: &[u8]) -> JResult<'_, bool> {
    let (i, b) = be_u8(i)?;
    match b {
        0 => Ok((i, false)),
        1 => Ok((i, true)),
        b => fail(DecodeError::InvalidBool(b)),
    }
}

/// A length that must be -1 (null) or fit, times `unit` bytes, in what is left of the input.
fn length(i: &[u8], unit: usize) -> JResult<'_, Option<usize>> {
    let (i, len) = int(i)?;
    if len == -1 {
        return Ok((i, None));
    }
    match usize::try_from(len) {
        Ok(n) if n.checked_mul(unit).is_some_and(|b| b <= i.len()) => Ok((i, Some(n))),
        _ => fail(DecodeError::BadLength {
            len,
            remaining: i.len(),
        }),
    }
}

/// A `buffer`; `None` is jute's null (length -1).
pub fn buffer(i: &[u8]) -> JResult<'_, Option<&[u8]>> {
    match length(i, 1)? {
        (i, None) => Ok((i, None)),
        (i, Some(n)) => {
            let (i, b) = take(n).parse(i)?;
            Ok((i, Some(b)))
        }
    }
}

/// A `buffer` where null and empty mean the same (passwords, auth data, SASL tokens).
pub fn buffer_vec(i: &[u8]) -> JResult<'_, Vec<u8>> {
    let (i, b) = buffer(i)?;
    Ok((i, b.unwrap_or_default().to_vec()))
}

/// A `buffer` keeping null apart from empty (znode data: ZooKeeper stores and returns null).
pub fn buffer_opt(i: &[u8]) -> JResult<'_, Option<Vec<u8>>> {
    let (i, b) = buffer(i)?;
    Ok((i, b.map(<[u8]>::to_vec)))
}

/// A `ustring`; `None` is jute's null (length -1).
pub fn ustring_opt(i: &[u8]) -> JResult<'_, Option<String>> {
    match buffer(i)? {
        (i, None) => Ok((i, None)),
        (i, Some(b)) => match std::str::from_utf8(b) {
            Ok(s) => Ok((i, Some(s.to_owned()))),
            Err(_) => fail(DecodeError::InvalidUtf8),
        },
    }
}

/// A `ustring` where null reads as the empty string. ZooKeeper rejects a null path as it rejects
/// an empty one, so nothing a server does depends on the difference.
pub fn ustring(i: &[u8]) -> JResult<'_, String> {
    let (i, s) = ustring_opt(i)?;
    Ok((i, s.unwrap_or_default()))
}

/// A request's path. A null path (length -1) is malformed: ZooKeeper fails the whole request with
/// `MarshallingError` (kazoo sends `""` as null), while `""` is a path like any other.
pub fn request_path(i: &[u8]) -> JResult<'_, String> {
    match ustring_opt(i)? {
        (i, Some(s)) => Ok((i, s)),
        (_, None) => fail(DecodeError::NullPath),
    }
}

/// A `vector`; null (count -1) reads as empty. `min_item` is the smallest encoding of one item,
/// used to reject a count the rest of the input cannot hold before allocating.
pub fn vector<'a, T>(
    i: &'a [u8],
    min_item: usize,
    item: impl Fn(&'a [u8]) -> JResult<'a, T>,
) -> JResult<'a, Vec<T>> {
    let (mut i, n) = length(i, min_item.max(1))?;
    let n = n.unwrap_or(0);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let (rest, x) = item(i)?;
        v.push(x);
        i = rest;
    }
    Ok((i, v))
}

/// A vector of `ustring`s (each at least its 4-byte length).
pub fn string_vector(i: &[u8]) -> JResult<'_, Vec<String>> {
    vector(i, 4, ustring)
}

/// A vector of records.
pub fn record_vector<T: Decode>(i: &[u8], min_item: usize) -> JResult<'_, Vec<T>> {
    vector(i, min_item, T::decode)
}

pub fn put_bool(out: &mut BytesMut, b: bool) {
    out.put_u8(u8::from(b));
}

/// Writes a `buffer`; `None` as null (-1).
pub fn put_buffer(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => out.put_i32(-1),
        Some(b) => {
            out.put_i32(len_i32(b.len()));
            out.put_slice(b);
        }
    }
}

/// Writes a `ustring`; `None` as null (-1).
pub fn put_ustring(out: &mut BytesMut, s: Option<&str>) {
    put_buffer(out, s.map(str::as_bytes));
}

pub fn put_str(out: &mut BytesMut, s: &str) {
    put_buffer(out, Some(s.as_bytes()));
}

pub fn put_string_vector(out: &mut BytesMut, v: &[String]) {
    out.put_i32(len_i32(v.len()));
    for s in v {
        put_str(out, s);
    }
}

pub fn put_record_vector<T: Encode>(out: &mut BytesMut, v: &[T]) {
    out.put_i32(len_i32(v.len()));
    for x in v {
        x.encode(out);
    }
}

/// Encoded size of a `buffer` or `ustring` of `n` bytes (null counts as 0 bytes).
pub fn buffer_len(n: usize) -> usize {
    4 + n
}

pub fn string_vector_len(v: &[String]) -> usize {
    4 + v.iter().map(|s| buffer_len(s.len())).sum::<usize>()
}

pub fn record_vector_len<T: Encode>(v: &[T]) -> usize {
    4 + v.iter().map(Encode::encoded_len).sum::<usize>()
}

/// A length as jute's `int`. Lengths above `i32::MAX` cannot be framed (frames are far smaller),
/// so saturating keeps encoding total; such a record is rejected by `split_frame`'s maximum anyway.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
