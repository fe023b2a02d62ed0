//! Authentication and ACLs as ZooKeeper 3.8's built-in providers do them: `world:anyone`, `auth`,
//! `digest` (user:base64(sha1(user:password))) and `ip` (IPv4 with an optional /bits mask), plus the
//! `super` id a superDigest match grants. No other scheme has a provider.

use base64::Engine as _;
use protocol::{perms, Acl, ClientInfo, ErrorCode, Id};
use sha1::{Digest as _, Sha1};

/// `DigestAuthenticationProvider.generateDigest`: `user:base64(sha1("user:password"))`, where `user`
/// is everything before the first `:` (the whole string if there is none).
pub fn generate_digest(id_password: &str) -> String {
    let user = id_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(id_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The ids an `addauth` adds to a session, in order, or `AuthFailed` for a scheme without provider.
/// `client_ip` is the connection's address (what the `ip` provider authenticates).
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    client_ip: &str,
    super_digest: Option<&str>,
) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "digest" => {
            let digest = generate_digest(&String::from_utf8_lossy(auth));
            let mut ids = Vec::with_capacity(2);
            if super_digest == Some(digest.as_str()) {
                ids.push(id("super", ""));
            }
            ids.push(id("digest", &digest));
            Ok(ids)
        }
        "ip" => Ok(vec![id("ip", client_ip)]),
        _ => Err(ErrorCode::AuthFailed),
    }
}

fn id(scheme: &str, id: &str) -> Id {
    Id {
        scheme: scheme.to_string(),
        id: id.to_string(),
    }
}

/// `ZooKeeperServer.checkACL`: allowed if the list is empty, the caller holds `super`, or an entry
/// carrying one of `perm`'s bits is `world:anyone` or matches one of the caller's ids.
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), ErrorCode> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    let granted = acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        let (scheme, expr) = (a.id.scheme.as_str(), a.id.id.as_str());
        match scheme {
            "world" => expr == "anyone",
            "digest" => ids.iter().any(|i| i.scheme == "digest" && i.id == expr),
            "ip" => ids
                .iter()
                .any(|i| i.scheme == "ip" && ip_matches(&i.id, expr)),
            _ => false,
        }
    });
    if granted {
        Ok(())
    } else {
        Err(ErrorCode::NoAuth)
    }
}

/// `PrepRequestProcessor.fixupACL`: drops duplicates, rejects an empty list and ids no provider
/// accepts, and expands each `auth` entry into one entry per authenticated id of the caller (digest
/// ids; `ip` ids are not "authenticated"), failing if there is none.
pub fn fixup(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let before = out.len();
                for cid in ids.iter().filter(|i| i.scheme == "digest") {
                    out.push(Acl {
                        perms: a.perms,
                        id: cid.clone(),
                    });
                }
                if out.len() == before {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if java_split_len(&a.id.id, ':') == 2 => out.push(a.clone()),
            "ip" if ip_valid(&a.id.id) => out.push(a.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(out)
}

/// getACL without ADMIN: digest ids are masked as Java's `id.replaceAll(":.*", ":x")` does
/// (`.` stops at a line terminator).
pub fn mask_digests(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme != "digest" {
                return a.clone();
            }
            let mut masked = String::with_capacity(a.id.id.len());
            let mut skipping = false;
            for c in a.id.id.chars() {
                if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
                    skipping = false;
                }
                if skipping {
                    continue;
                }
                if c == ':' {
                    masked.push_str(":x");
                    skipping = true;
                } else {
                    masked.push(c);
                }
            }
            Acl {
                perms: a.perms,
                id: Id {
                    scheme: a.id.scheme.clone(),
                    id: masked,
                },
            }
        })
        .collect()
}

/// whoAmI: one entry per id; the user is what the scheme's provider names (`digest`: the part before
/// `:`, `ip`: the address, no provider: empty).
pub fn client_infos(ids: &[Id]) -> Vec<ClientInfo> {
    ids.iter()
        .map(|i| ClientInfo {
            auth_scheme: i.scheme.clone(),
            user: match i.scheme.as_str() {
                "digest" => i.id.split(':').next().unwrap_or("").to_string(),
                "ip" => i.id.clone(),
                _ => String::new(),
            },
        })
        .collect()
}

/// The length of Java's `s.split(c)` (trailing empty strings removed; `""` splits into one).
fn java_split_len(s: &str, c: char) -> usize {
    if s.is_empty() {
        return 1;
    }
    let parts: Vec<&str> = s.split(c).collect();
    parts.len() - parts.iter().rev().take_while(|p| p.is_empty()).count()
}

/// Java's `Integer.parseInt`: optional sign, decimal digits, no overflow.
fn java_parse_int(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `IPAuthenticationProvider.v4addr2Bytes`.
fn v4_bytes(addr: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut b = [0u8; 4];
    for (slot, part) in b.iter_mut().zip(parts) {
        let v = java_parse_int(part)?;
        *slot = u8::try_from(v).ok()?;
    }
    Some(b)
}

fn mask_bits(b: &mut [u8; 4], bits: u32) {
    let start = (bits / 8) as usize;
    let mut mask = !((1u16 << (8 - bits % 8)) - 1) as u8;
    for byte in b.iter_mut().skip(start) {
        *byte &= mask;
        mask = 0;
    }
}

/// The address and mask width of an ip ACL expression, if valid (`IPAuthenticationProvider.isValid`).
fn parse_ip_expr(expr: &str) -> Option<([u8; 4], u32)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (expr, None),
    };
    let bytes = v4_bytes(addr)?;
    let bits = match bits {
        Some(b) => u32::try_from(java_parse_int(b)?)
            .ok()
            .filter(|b| *b <= 32)?,
        None => 32,
    };
    Some((bytes, bits))
}

fn ip_valid(expr: &str) -> bool {
    parse_ip_expr(expr).is_some()
}

/// `IPAuthenticationProvider.matches`: IPv4 only, compared under the expression's mask.
pub fn ip_matches(client: &str, expr: &str) -> bool {
    let Some((mut acl_addr, bits)) = parse_ip_expr(expr) else {
        return false;
    };
    let Some(mut remote) = v4_bytes(client) else {
        return false;
    };
    mask_bits(&mut acl_addr, bits);
    mask_bits(&mut remote, bits);
    acl_addr == remote
}

/// `ZooDefs.Ids.OPEN_ACL_UNSAFE`.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: id("world", "anyone"),
    }]
}

/// `ZooDefs.Ids.READ_ACL_UNSAFE`.
pub fn read_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::READ,
        id: id("world", "anyone"),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(perms: i32, scheme: &str, i: &str) -> Acl {
        Acl {
            perms,
            id: id(scheme, i),
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // DigestAuthenticationProvider.generateDigest("super:test"), as documented by ZooKeeper.
        assert_eq!(
            generate_digest("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert_eq!(generate_digest("user"), "user:Et6pb+wgWTVmq3VpLJlJWWgzrck=");
        assert_eq!(generate_digest("a:b:c"), "a:cLzgnoJ6mP5qz3w+mwvPE2vDgu0=");
    }

    #[test]
    fn authenticate_schemes() {
        let sd = generate_digest("super:pw");
        let ids = authenticate("digest", b"super:pw", "1.2.3.4", Some(&sd)).unwrap();
        assert_eq!(ids, vec![id("super", ""), id("digest", &sd)]);
        let ids = authenticate("digest", b"bob:pw", "1.2.3.4", Some(&sd)).unwrap();
        assert_eq!(ids, vec![id("digest", &generate_digest("bob:pw"))]);
        assert_eq!(
            authenticate("ip", b"", "1.2.3.4", None).unwrap(),
            vec![id("ip", "1.2.3.4")]
        );
        for s in ["world", "super", "sasl", "x509", "auth", ""] {
            assert_eq!(
                authenticate(s, b"a:b", "1.2.3.4", None),
                Err(ErrorCode::AuthFailed)
            );
        }
    }

    #[test]
    fn ip_masks() {
        assert!(ip_matches("10.1.2.3", "10.1.2.3"));
        assert!(!ip_matches("10.1.2.4", "10.1.2.3"));
        assert!(ip_matches("10.1.2.200", "10.1.2.0/24"));
        assert!(!ip_matches("10.1.3.1", "10.1.2.0/24"));
        assert!(ip_matches("10.1.3.1", "10.1.2.0/22"));
        assert!(ip_matches("99.1.3.1", "10.1.2.0/0"));
        assert!(ip_matches("10.1.2.3", "10.1.2.2/31"));
        assert!(!ip_matches("10.1.2.3", "10.1.2.2/32"));
        assert!(!ip_matches("10.1.2.3", "10.1.2.3/33"));
        assert!(!ip_matches("::1", "10.1.2.3"));
        assert!(ip_matches("10.1.2.3", "+10.01.2.3"));
        assert!(!ip_matches("10.1.2.3", "10.1.2"));
        assert!(!ip_matches("10.1.2.3", "10.1.2.256"));
    }

    #[test]
    fn check_matrix() {
        let digest = generate_digest("u:p");
        let node = vec![
            acl(perms::READ, "digest", &digest),
            acl(perms::WRITE, "ip", "127.0.0.0/8"),
        ];
        let ip = [id("ip", "127.0.0.1")];
        let user = [id("ip", "10.0.0.1"), id("digest", &digest)];
        assert_eq!(check(&node, perms::READ, &ip), Err(ErrorCode::NoAuth));
        assert_eq!(check(&node, perms::WRITE, &ip), Ok(()));
        assert_eq!(check(&node, perms::READ, &user), Ok(()));
        assert_eq!(check(&node, perms::WRITE, &user), Err(ErrorCode::NoAuth));
        assert_eq!(check(&node, perms::ADMIN, &[id("super", "")]), Ok(()));
        assert_eq!(check(&node, perms::READ | perms::ADMIN, &user), Ok(()));
        assert_eq!(check(&[], perms::ADMIN, &[]), Ok(()));
        assert_eq!(
            check(&[acl(perms::ALL, "world", "nobody")], perms::READ, &[]),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(check(&open_acl(), perms::DELETE, &[]), Ok(()));
        assert_eq!(
            check(&read_acl(), perms::WRITE, &[]),
            Err(ErrorCode::NoAuth)
        );
    }

    #[test]
    fn fixup_rules() {
        let digest = generate_digest("u:p");
        let ids = [id("ip", "127.0.0.1"), id("digest", &digest)];
        assert_eq!(fixup(&[], &ids), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup(&[acl(31, "auth", "")], &ids[..1]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[acl(31, "auth", "ignored")], &ids),
            Ok(vec![acl(31, "digest", &digest)])
        );
        assert_eq!(fixup(&open_acl(), &[]), Ok(open_acl()));
        assert_eq!(
            fixup(&[open_acl()[0].clone(), open_acl()[0].clone()], &[]),
            Ok(open_acl())
        );
        for bad in [
            acl(1, "world", "everyone"),
            acl(1, "digest", "nocolon"),
            acl(1, "digest", "a:b:c"),
            acl(1, "digest", "a:"),
            acl(1, "ip", "1.2.3"),
            acl(1, "ip", "1.2.3.4/40"),
            acl(1, "super", ""),
            acl(1, "sasl", "x"),
        ] {
            assert_eq!(
                fixup(std::slice::from_ref(&bad), &ids),
                Err(ErrorCode::InvalidAcl),
                "{bad:?}"
            );
        }
        for good in [
            acl(1, "digest", ":b"),
            acl(1, "ip", "1.2.3.4"),
            acl(1, "ip", "1.2.3.4/0"),
        ] {
            assert_eq!(fixup(std::slice::from_ref(&good), &ids), Ok(vec![good]));
        }
    }

    #[test]
    fn masking_and_client_infos() {
        let masked = mask_digests(&[acl(1, "digest", "bob:abc="), acl(1, "ip", "1.2.3.4")]);
        assert_eq!(
            masked,
            vec![acl(1, "digest", "bob:x"), acl(1, "ip", "1.2.3.4")]
        );
        assert_eq!(
            mask_digests(&[acl(1, "digest", "a:b\nc:d")])[0].id.id,
            "a:x\nc:x"
        );
        let infos = client_infos(&[
            id("ip", "1.2.3.4"),
            id("digest", "bob:abc="),
            id("super", ""),
        ]);
        let users: Vec<(&str, &str)> = infos
            .iter()
            .map(|c| (c.auth_scheme.as_str(), c.user.as_str()))
            .collect();
        assert_eq!(users, [("ip", "1.2.3.4"), ("digest", "bob"), ("super", "")]);
    }
}
