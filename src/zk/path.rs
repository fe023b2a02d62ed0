//! ZooKeeper's znode path rules: `PathUtils.validatePath` and the parent split Prep uses.

/// Whether `path` passes ZooKeeper's `PathUtils.validatePath`: it starts with `/`, is `/` or does not
/// end with `/`, has no empty segment, no `.` or `..` segment, no NUL, and no character ZooKeeper
/// rejects (U+0001–U+001F, U+007F–U+009F, U+E000–U+F8FF, U+FFF0–U+FFFF, and anything outside the BMP,
/// which Java sees as surrogates U+D800–U+DFFF).
pub fn is_valid(path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    if chars.first() != Some(&'/') {
        return false;
    }
    if chars.len() == 1 {
        return true;
    }
    if chars[chars.len() - 1] == '/' {
        return false;
    }
    let segment_ends = |i: usize| i + 1 == chars.len() || chars[i + 1] == '/';
    let mut last = '/';
    for i in 1..chars.len() {
        let c = chars[i];
        let bad = if c == '\0' || (c == '/' && last == '/') {
            true
        } else if c == '.' && last == '.' {
            chars[i - 2] == '/' && segment_ends(i)
        } else if c == '.' {
            chars[i - 1] == '/' && segment_ends(i)
        } else {
            is_forbidden_char(c)
        };
        if bad {
            return false;
        }
        last = c;
    }
    true
}

fn is_forbidden_char(c: char) -> bool {
    matches!(c, '\u{1}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..)
}

/// The parent as Prep computes it: everything before the last `/` (so `""` for a child of the root,
/// which ZooKeeper's tree aliases to the root). `None` when the path has no `/` or contains a NUL.
pub fn parent_for_prep(path: &str) -> Option<&str> {
    if path.contains('\0') {
        return None;
    }
    path.rfind('/').map(|i| &path[..i])
}

/// The key the tree stores a path under: ZooKeeper aliases `""` to the root.
pub fn key(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// The last segment of `path`.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// The paths a watch trigger on `path` visits, as `PathParentIterator.forAll`: the path itself, then
/// each ancestor up to and including `/`.
pub fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = if path.is_empty() { None } else { Some(path) };
    std::iter::from_fn(move || {
        let current = next?;
        next = if current == "/" {
            None
        } else {
            match current.rfind('/') {
                Some(0) => Some("/"),
                Some(i) => Some(&current[..i]),
                None => None,
            }
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_zookeeper_accepts() {
        for p in [
            "/", "/a", "/a/b", "/a.b", "/.a", "/a.", "/...", "/a/..b", "/é", "/a b",
        ] {
            assert!(is_valid(p), "{p:?} should be valid");
        }
    }

    #[test]
    fn rejects_what_zookeeper_rejects() {
        for p in [
            "",
            "a",
            "a/b",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/./a",
            "/../a",
            "/a\0b",
            "/a\u{1}",
            "/a\u{1f}",
            "/\u{7f}",
            "/\u{9f}",
            "/\u{e000}",
            "/\u{f8ff}",
            "/\u{fff0}",
            "/\u{fffd}",
            "/\u{ffff}",
            "/😀",
        ] {
            assert!(!is_valid(p), "{p:?} should be invalid");
        }
    }

    #[test]
    fn boundary_characters_are_allowed() {
        for c in [
            '\u{20}', '\u{7e}', '\u{a0}', '\u{d7ff}', '\u{f900}', '\u{ffef}',
        ] {
            assert!(is_valid(&format!("/a{c}")), "{c:?}");
        }
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent_for_prep("/a"), Some(""));
        assert_eq!(parent_for_prep("/a/b"), Some("/a"));
        assert_eq!(parent_for_prep("/a/"), Some("/a"));
        assert_eq!(parent_for_prep("a"), None);
        assert_eq!(parent_for_prep("/a\0"), None);
        assert_eq!(name("/a/bc"), "bc");
        assert_eq!(key(""), "/");
    }

    #[test]
    fn ancestors_walk_to_root() {
        let v: Vec<&str> = self_and_ancestors("/a/b/c").collect();
        assert_eq!(v, ["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(self_and_ancestors("/").collect::<Vec<_>>(), ["/"]);
        assert_eq!(self_and_ancestors("").count(), 0);
    }
}
