//! Arbitrary bytes through the whole decoding path: frame splitting (small maximum, so the size
//! check is exercised), then each body as a connect request, a request and a reply. Whatever
//! decodes must re-encode to a body that decodes to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use volery_protocol::*;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    // Feed the bytes in two reads to exercise "need more bytes".
    let cut = usize::from(selector) % (data.len() + 1);
    let mut buf = BytesMut::new();
    let mut bodies = Vec::new();
    for part in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(part);
        loop {
            match split_frame(&mut buf, 4096) {
                Ok(Some(body)) => bodies.push(body),
                Ok(None) | Err(_) => break,
            }
        }
    }
    // Also decode the raw input as one body.
    bodies.push(bytes::Bytes::copy_from_slice(data));
    let op = OpCode::ALL[usize::from(selector) % OpCode::ALL.len()];
    for body in &bodies {
        if let Ok(c) = decode_connect_request(body) {
            let mut out = BytesMut::new();
            c.encode(&mut out);
            assert_eq!(decode_connect_request(&out).unwrap(), c);
        }
        let _ = decode_connect_response(body);
        if let Ok((h, req)) = decode_request(body) {
            let mut out = BytesMut::new();
            encode_request(&h, &req, &mut out);
            assert_eq!(out.len(), 8 + req.encoded_len());
            assert_eq!(decode_request(&out).unwrap(), (h, req));
        }
        if let Ok((h, rsp)) = decode_reply(op, body) {
            let mut out = BytesMut::new();
            encode_reply(&h, rsp.as_ref(), &mut out);
            assert_eq!(decode_reply(op, &out).unwrap(), (h, rsp));
        }
    }
});
