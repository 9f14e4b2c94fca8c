//! A search for hard-coded secrets in a firmware image.
//!
//! The scan works like `strings`: it reads the image as bytes, cuts it into runs of
//! printable ASCII (space to `~`, and tab) of at least [`MIN_STRING`] characters, and
//! looks at each run for credential-like material:
//!
//! * PEM private keys (`-----BEGIN … PRIVATE KEY-----`, any key type, encrypted or
//!   not); the value reported is the base64 body that follows, as far as the image
//!   holds it;
//! * assignments of a literal value to a name whose last word is a password, key,
//!   secret, token or PIN word (`svc key: KC-4471-ZX-BKD`,
//!   `sms default password: 123456`, `api_key="…"`, `"token": "…"`).
//!
//! Values that are format placeholders (`%s`, `%08x`, `<password>`, `{password}`,
//! `${PASSWORD}`, `$(…)`), masks (`****`, `xxxx`), booleans, `null`/`none`, status
//! words (`invalid`, `required`, …) and values shorter than [`MIN_VALUE`] characters
//! are not reported.
//!
//! What it does not do: it does not decode compressed or encrypted sections, does not
//! look at UTF-16 strings, does not find keys stored as raw binary (DER without PEM
//! armour, bare key bytes) and does not judge the entropy of arbitrary strings. A
//! clean result therefore means "no secret in readable form", not "no secret".
//!
//! Memory is bounded whatever the input: the image is read through a fixed buffer, a
//! printable run is cut at [`MAX_STRING`] bytes, a PEM body is kept up to
//! [`MAX_PEM_BODY`] bytes and at most [`MAX_FINDINGS`] findings are kept (the number
//! of findings beyond that is counted).

use std::io::Read;
use std::path::Path;

/// Shortest printable run looked at (as `strings`' default).
pub const MIN_STRING: usize = 4;
/// Longest printable run kept in one piece; longer runs are cut into pieces.
pub const MAX_STRING: usize = 4096;
/// Shortest value of an assignment that is reported.
pub const MIN_VALUE: usize = 4;
/// Most PEM body bytes kept for one private key.
pub const MAX_PEM_BODY: usize = 8192;
/// Most findings kept; more are counted in [`Scan::dropped`].
pub const MAX_FINDINGS: usize = 200;

/// What kind of secret a finding is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A PEM private key block.
    PrivateKey,
    /// A password, key, secret, token or PIN assigned a literal value.
    Assignment,
}

/// One secret found in the image.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Byte offset in the image of the finding's start (the PEM header, or the name
    /// of the assignment).
    pub offset: u64,
    pub kind: FindingKind,
    /// What was found: the PEM header (`-----BEGIN RSA PRIVATE KEY-----`) or the
    /// assignment's name (`svc key`).
    pub label: String,
    /// The secret value itself. Never shown by `Debug` or `Serialize`; use
    /// [`Finding::masked`].
    #[serde(skip)]
    pub value: String,
}

impl Finding {
    /// The value masked: its first two characters and its length.
    pub fn masked(&self) -> String {
        mask(&self.value)
    }
}

impl std::fmt::Debug for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finding")
            .field("offset", &self.offset)
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("value", &self.masked())
            .finish()
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            FindingKind::PrivateKey => "private key",
            FindingKind::Assignment => "literal value",
        };
        write!(
            f,
            "offset {} (0x{:x}): {what} `{}` = {}",
            self.offset,
            self.offset,
            self.label,
            self.masked()
        )
    }
}

/// A secret shown as its first two characters and its length, e.g.
/// `KC… (14 characters)`.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    let head: String = value.chars().take(2).collect();
    let unit = if n == 1 { "character" } else { "characters" };
    format!("{head}… ({n} {unit})")
}

/// The result of a scan.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Bytes read.
    pub bytes: u64,
    /// Printable runs of at least [`MIN_STRING`] characters looked at.
    pub strings: u64,
    /// Findings, in image order (at most [`MAX_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// Findings beyond [`MAX_FINDINGS`], counted but not kept.
    pub dropped: u64,
}

/// Words that make a name a credential when they are its last word.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "pw",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "key",
    "apikey",
    "privkey",
    "psk",
    "pin",
    "pincode",
    "credential",
    "credentials",
];

/// Values that say something about a credential rather than being one.
const NOT_A_VALUE: &[&str] = &[
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "null",
    "nil",
    "none",
    "empty",
    "unset",
    "invalid",
    "incorrect",
    "wrong",
    "required",
    "missing",
    "expired",
    "error",
    "failed",
    "changed",
    "accepted",
    "rejected",
    "ok",
    "redacted",
    "hidden",
];

/// Scan an image file.
pub fn scan_file(path: &Path) -> std::io::Result<Scan> {
    scan_reader(std::fs::File::open(path)?)
}

/// Scan bytes in memory.
pub fn scan_bytes(bytes: &[u8]) -> Scan {
    let mut s = Scanner::default();
    s.feed(bytes);
    s.finish()
}

/// Scan everything `r` yields, through a fixed buffer.
pub fn scan_reader(mut r: impl Read) -> std::io::Result<Scan> {
    let mut s = Scanner::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => s.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(s.finish())
}

/// A PEM private key whose body is being collected.
struct OpenKey {
    offset: u64,
    label: String,
    body: String,
}

/// Streaming state: the current printable run and any PEM block being read.
#[derive(Default)]
struct Scanner {
    offset: u64,
    run: Vec<u8>,
    run_start: u64,
    key: Option<OpenKey>,
    scan: Scan,
}

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) || b == b'\t'
}

impl Scanner {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if printable(b) {
                if self.run.is_empty() {
                    self.run_start = self.offset;
                }
                self.run.push(b);
                if self.run.len() >= MAX_STRING {
                    self.end_run(false);
                }
            } else {
                // A line break inside a PEM block continues the block; anything else
                // ends it.
                let newline = b == b'\n' || b == b'\r';
                self.end_run(!newline);
            }
            self.offset += 1;
        }
        self.scan.bytes = self.offset;
    }

    fn finish(mut self) -> Scan {
        self.end_run(true);
        self.scan
    }

    fn push(&mut self, f: Finding) {
        if self.scan.findings.len() < MAX_FINDINGS {
            self.scan.findings.push(f);
        } else {
            self.scan.dropped += 1;
        }
    }

    fn close_key(&mut self) {
        if let Some(k) = self.key.take() {
            self.push(Finding {
                offset: k.offset,
                kind: FindingKind::PrivateKey,
                label: k.label,
                value: k.body,
            });
        }
    }

    /// The current run ended (`hard`: by a byte that also ends a PEM block).
    fn end_run(&mut self, hard: bool) {
        let run = std::mem::take(&mut self.run);
        let start = self.run_start;
        if run.len() >= MIN_STRING {
            self.scan.strings += 1;
            // Every byte is printable ASCII, so this is valid UTF-8.
            let text = String::from_utf8_lossy(&run);
            self.look_at(&text, start);
        } else if !run.is_empty() && self.key.is_some() {
            // Short base64 lines at the end of a PEM body.
            let text = String::from_utf8_lossy(&run);
            self.key_line(&text);
        }
        if hard {
            self.close_key();
        }
    }

    fn key_line(&mut self, text: &str) {
        let Some(k) = self.key.as_mut() else { return };
        let t = text.trim();
        if t.is_empty() {
            return;
        }
        let is_body = !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-'))
            && !t.starts_with("-----");
        if is_body {
            let room = MAX_PEM_BODY.saturating_sub(k.body.len());
            k.body.extend(t.chars().take(room));
        } else if !t.contains(':') {
            // Not a header line (`Proc-Type: …`) either: the block is over.
            self.close_key();
        }
    }

    fn look_at(&mut self, text: &str, start: u64) {
        let mut rest = text;
        let mut base = 0usize;
        if self.key.is_some() {
            if let Some(end) = text.find("-----END ") {
                let before = &text[..end];
                self.key_line(before);
                self.close_key();
                base = end;
                rest = &text[end..];
            } else if !text.contains("-----BEGIN ") {
                self.key_line(text);
                if self.key.is_some() {
                    return;
                }
            } else {
                self.close_key();
            }
        }
        // PEM private key headers.
        while let Some(at) = rest.find("-----BEGIN ") {
            let after = &rest[at + 11..];
            let Some(close) = after.find("-----") else {
                break;
            };
            let kind = &after[..close];
            let next = at + 11 + close + 5;
            if kind.ends_with("PRIVATE KEY") && kind.len() <= 40 {
                self.close_key();
                self.key = Some(OpenKey {
                    offset: start + (base + at) as u64,
                    label: format!("-----BEGIN {kind}-----"),
                    body: String::new(),
                });
                // A body on the same line (armour without line breaks).
                let tail = &rest[next..];
                let body_end = tail.find("-----END ").unwrap_or(tail.len());
                self.key_line(&tail[..body_end]);
                if body_end < tail.len() {
                    self.close_key();
                }
            }
            base += next;
            rest = &rest[next..];
        }
        for (at, label, value) in assignments(text) {
            self.push(Finding {
                offset: start + at as u64,
                kind: FindingKind::Assignment,
                label,
                value,
            });
        }
    }
}

/// Assignments of a literal value to a credential name in one printable string:
/// `(byte offset of the name, name, value)`.
pub fn assignments(text: &str) -> Vec<(usize, String, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let two = b.get(i..i + 2);
        let sep_len = match b[i] {
            // `==` compares.
            b'=' if two == Some(b"==") => {
                i += 2;
                continue;
            }
            b':' if two == Some(b":=") => 2,
            b'=' if two == Some(b"=>") => 2,
            b':' | b'=' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if let Some((name_at, name)) = name_before(text, i) {
            if let Some(value) = value_after(text, i + sep_len) {
                out.push((name_at, name, value));
            }
        }
        i += sep_len;
    }
    out
}

/// The name written before a separator at `sep`, if its last word is a credential
/// word: `(start, name)`. The name is up to four words of letters, digits, `_`, `.`
/// and `-`, separated by single spaces.
fn name_before(text: &str, sep: usize) -> Option<(usize, String)> {
    let b = text.as_bytes();
    let mut end = sep;
    // `"password" :` / `password :`
    while end > 0 && b[end - 1] == b' ' {
        end -= 1;
    }
    if end > 0 && (b[end - 1] == b'"' || b[end - 1] == b'\'') {
        end -= 1;
    }
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-');
    let mut start = end;
    while start > 0 && word_byte(b[start - 1]) {
        start -= 1;
    }
    if start == end {
        return None;
    }
    let last = &text[start..end];
    let last_part = last
        .rsplit(['_', '.', '-'])
        .next()
        .unwrap_or(last)
        .to_ascii_lowercase();
    let camel_tail = camel_last(last);
    if !SECRET_WORDS.contains(&last_part.as_str())
        && !camel_tail.is_some_and(|t| SECRET_WORDS.contains(&t.as_str()))
    {
        return None;
    }
    // Extend over up to three more words before it (`sms default password`).
    let mut name_start = start;
    for _ in 0..3 {
        if name_start < 2 || b[name_start - 1] != b' ' || !word_byte(b[name_start - 2]) {
            break;
        }
        let mut s = name_start - 1;
        while s > 0 && word_byte(b[s - 1]) {
            s -= 1;
        }
        if !b[s].is_ascii_alphabetic() {
            break;
        }
        name_start = s;
    }
    Some((name_start, text[name_start..end].to_string()))
}

/// The last word of a camelCase name in lower case (`apiToken` → `token`), if the
/// name has an upper-case letter after its first character.
fn camel_last(word: &str) -> Option<String> {
    let at = word
        .char_indices()
        .skip(1)
        .filter(|(_, c)| c.is_ascii_uppercase())
        .map(|(i, _)| i)
        .last()?;
    Some(word[at..].to_ascii_lowercase())
}

/// The literal value after a separator ending at `from`, if it is one.
fn value_after(text: &str, from: usize) -> Option<String> {
    let rest = text.get(from..)?.trim_start_matches([' ', '\t']);
    let value = match rest.as_bytes().first()? {
        q @ (b'"' | b'\'') => {
            let inner = &rest[1..];
            let end = inner.find(*q as char)?;
            &inner[..end]
        }
        _ => {
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\''))
                .unwrap_or(rest.len());
            &rest[..end]
        }
    };
    literal(value).then(|| value.to_string())
}

/// Whether an assigned value is a literal secret rather than a placeholder.
pub fn literal(value: &str) -> bool {
    let v = value.trim();
    if v.chars().count() < MIN_VALUE {
        return false;
    }
    if NOT_A_VALUE.contains(&v.to_ascii_lowercase().as_str()) {
        return false;
    }
    // Format specifiers: %s, %d, %08x, %.*s, %1$s.
    if has_format_spec(v) {
        return false;
    }
    // Template placeholders.
    let wrapped = |open: char, close: char| v.starts_with(open) && v.ends_with(close);
    if wrapped('<', '>') || wrapped('{', '}') || wrapped('[', ']') || wrapped('(', ')') {
        return false;
    }
    if v.starts_with('$') || v.contains("{{") || v.contains("${") {
        return false;
    }
    // Masks: one repeated character (****, xxxx, ....).
    let mut chars = v.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) && !first.is_ascii_digit() {
            return false;
        }
    }
    true
}

fn has_format_spec(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let mut j = i + 1;
            while j < b.len()
                && (b[j].is_ascii_digit()
                    || matches!(
                        b[j],
                        b'.' | b'*' | b'-' | b'+' | b'$' | b'l' | b'h' | b'z' | b'#' | b' '
                    ))
            {
                j += 1;
            }
            if j < b.len()
                && matches!(
                    b[j],
                    b's' | b'd' | b'i' | b'u' | b'x' | b'X' | b'c' | b'p' | b'f' | b'o'
                )
            {
                return true;
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(rel)
    }

    fn values(scan: &Scan) -> Vec<(String, String)> {
        scan.findings
            .iter()
            .map(|f| (f.label.clone(), f.value.clone()))
            .collect()
    }

    #[test]
    fn the_field_image_holds_the_backdoor_key_and_the_default_password() {
        let scan = scan_file(&fixture("images/field-2.4.0.img")).unwrap();
        let found = values(&scan);
        assert!(
            found.contains(&("svc key".into(), "KC-4471-ZX-BKD".into())),
            "{found:?}"
        );
        assert!(
            found.contains(&("sms default password".into(), "123456".into())),
            "{found:?}"
        );
        assert_eq!(found.len(), 2, "{found:?}");
        // The offsets point at the names in the file.
        let bytes = std::fs::read(fixture("images/field-2.4.0.img")).unwrap();
        for f in &scan.findings {
            let at = f.offset as usize;
            assert_eq!(&bytes[at..at + f.label.len()], f.label.as_bytes());
        }
    }

    #[test]
    fn the_reference_images_and_payloads_are_clean() {
        for rel in [
            "images/reference-2.4.0.img",
            "images/reference-2.5.0.img",
            "images/reference-2.3.0.img",
            "payloads/reference.txt",
        ] {
            let path = if rel.starts_with("payloads") {
                fixture(&format!("images/{rel}"))
            } else {
                fixture(rel)
            };
            let scan = scan_file(&path).unwrap();
            assert!(scan.strings > 5, "{rel}: {scan:?}");
            assert!(scan.findings.is_empty(), "{rel}: {:?}", scan.findings);
        }
        let field = scan_file(&fixture("images/payloads/field.txt")).unwrap();
        assert_eq!(field.findings.len(), 2);
    }

    #[test]
    fn assignments_with_literal_values_are_found() {
        for (line, name, value) in [
            ("svc key: KC-4471-ZX-BKD", "svc key", "KC-4471-ZX-BKD"),
            (
                "sms default password: 123456",
                "sms default password",
                "123456",
            ),
            ("api_key=\"sk_live_abcdef\"", "api_key", "sk_live_abcdef"),
            ("{\"token\": \"eyJhbGciOi\"}", "token", "eyJhbGciOi"),
            ("wifi.psk = hunter22", "wifi.psk", "hunter22"),
            ("admin pin: 0000", "admin pin", "0000"),
            ("apiToken: AbCdEf12", "apiToken", "AbCdEf12"),
            ("MQTT_PASSWORD=changeme", "MQTT_PASSWORD", "changeme"),
        ] {
            let found = assignments(line);
            assert_eq!(
                found
                    .iter()
                    .map(|(_, n, v)| (n.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
                vec![(name, value)],
                "{line}"
            );
        }
    }

    #[test]
    fn placeholders_and_other_names_are_not_found() {
        for line in [
            "sms: pw,<password>,<counter>,<command># from centre/SOS numbers only",
            "password: %s",
            "password=%08x",
            "login failed, password: <password>",
            "password: {password}",
            "password: ${PASSWORD}",
            "password: ****",
            "password: invalid",
            "pin: 12",
            "token: null",
            "key_count: 12345",
            "keyboard: qwertz-layout",
            "monkey: banana-split",
            "pinned: true, transport: TLS 1.2+ mutual",
            "host: watch.kidcloud.example:6443",
            "svc: #*%s*photo#  *wiretap*%s",
            "if (password == stored) ok",
            "password:",
        ] {
            assert!(
                assignments(line).is_empty(),
                "{line}: {:?}",
                assignments(line)
            );
        }
    }

    #[test]
    fn pem_private_keys_are_found_and_public_material_is_not() {
        let img = b"\x00\x01junk-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\nAwEHoUQDQg==\n-----END EC PRIVATE KEY-----\n\x00\
-----BEGIN CERTIFICATE-----\nMIIBszCCAVmg\n-----END CERTIFICATE-----\n\
-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZI\n-----END PUBLIC KEY-----\n";
        let scan = scan_bytes(img);
        assert_eq!(scan.findings.len(), 1, "{:?}", scan.findings);
        let f = &scan.findings[0];
        assert_eq!(f.kind, FindingKind::PrivateKey);
        assert_eq!(f.label, "-----BEGIN EC PRIVATE KEY-----");
        assert_eq!(f.value, "MHcCAQEEIBkgAwEHoUQDQg==");
        assert_eq!(f.offset, 6);
        // A key with its armour on one line, and one the image cuts off.
        let one_line =
            scan_bytes(b"k=-----BEGIN PRIVATE KEY-----MIIEvQIBADAN-----END PRIVATE KEY-----");
        assert_eq!(one_line.findings.len(), 1);
        assert_eq!(one_line.findings[0].value, "MIIEvQIBADAN");
        let cut = scan_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r");
        assert_eq!(cut.findings.len(), 1);
        assert_eq!(cut.findings[0].value, "b3BlbnNzaC1r");
    }

    #[test]
    fn masking_shows_two_characters_and_the_length() {
        assert_eq!(mask("KC-4471-ZX-BKD"), "KC… (14 characters)");
        let f = Finding {
            offset: 10,
            kind: FindingKind::Assignment,
            label: "svc key".into(),
            value: "KC-4471-ZX-BKD".into(),
        };
        let shown = format!("{f} {f:?} {}", serde_json::to_string(&f).unwrap());
        assert!(!shown.contains("4471"), "{shown}");
        assert!(shown.contains("offset 10 (0xa)"), "{shown}");
    }

    #[test]
    fn strings_are_split_by_unprintable_bytes_and_short_runs_ignored() {
        let scan = scan_bytes(b"abc\x00key: ab\x01cdefgh\x00pw=1234\xffpin=98765");
        assert_eq!(scan.strings, 4); // "key: ab", "cdefgh", "pw=1234", "pin=98765"
        assert_eq!(
            values(&scan),
            vec![("pw".into(), "1234".into()), ("pin".into(), "98765".into())]
        );
        assert_eq!(scan.findings[0].offset, 19);
        assert_eq!(scan.findings[1].offset, 27);
        assert_eq!(scan.bytes, 36);
    }

    #[test]
    fn memory_stays_bounded_on_hostile_input() {
        // A huge printable run: cut into pieces, never held whole.
        let mut s = Scanner::default();
        let chunk = vec![b'A'; 100_000];
        for _ in 0..20 {
            s.feed(&chunk);
            assert!(s.run.len() < MAX_STRING);
        }
        // An endless PEM body.
        s.feed(b"\n-----BEGIN RSA PRIVATE KEY-----\n");
        for _ in 0..1000 {
            s.feed(b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n");
        }
        assert!(s.key.as_ref().unwrap().body.len() <= MAX_PEM_BODY);
        // Many findings: kept up to the limit, the rest counted.
        for _ in 0..(MAX_FINDINGS + 50) {
            s.feed(b"\x00pin=12345678\x00");
        }
        let scan = s.finish();
        assert_eq!(scan.findings.len(), MAX_FINDINGS);
        assert_eq!(scan.dropped, 51); // the key and 199 pins are kept
        assert_eq!(scan.findings[0].kind, FindingKind::PrivateKey);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u32 = 0x1234_5678;
        let mut bytes = Vec::with_capacity(1 << 16);
        for _ in 0..(1 << 16) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Bias towards separators, quotes and letters.
            let pool = b"key:= \"'%<>{}$-_.\n\x00pinPASSWORDtoken-----BEGIN PRIVATE KEY";
            bytes.push(if x & 1 == 0 {
                pool[(x as usize >> 1) % pool.len()]
            } else {
                (x >> 8) as u8
            });
        }
        let scan = scan_bytes(&bytes);
        assert_eq!(scan.bytes, bytes.len() as u64);
    }
}
