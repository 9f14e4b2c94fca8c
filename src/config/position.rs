//! Source positions of YAML nodes, by path.
//!
//! serde (through `yaml_serde`) reports where a *typed* error is, but semantic checks
//! (a GPIO pin used twice, an IMEI with a bad checksum, …) run on already-typed values
//! that no longer know where they came from. [`PosIndex`] re-reads the same text with
//! saphyr-parser's event parser and remembers, for every node reachable through
//! mapping keys and sequence indices, where its key and its value start.
//!
//! A path is a list of segments: mapping keys as written, sequence indices in decimal
//! (`["device", "declaration", "services", "0", "host"]`). Keys may contain dots
//! (host names), which is why paths are not dotted strings.

use saphyr_parser::{Event, Parser, Span};
use std::collections::HashMap;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, 1-based (0 = unknown).
    pub line: usize,
    /// Column, 1-based (0 = unknown).
    pub column: usize,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// Deepest nesting indexed (path segments). At the first node deeper than this,
/// indexing stops and [`PosIndex::too_deep`] tells where, so that a hostile file of
/// deep nesting costs neither stack nor quadratic memory here, and the loader can
/// refuse it before the typed parser (whose scanner slows down quadratically with
/// the depth of flow collections; its own recursion limit is 128) sees it.
pub const MAX_INDEX_DEPTH: usize = 128;

/// Where one node is: its key (for mapping entries) and its value.
#[derive(Debug, Clone, Default)]
pub struct NodePos {
    /// Position of the mapping key, if the node is a mapping value.
    pub key: Option<Pos>,
    /// Position of the value (first character of a scalar, `{`/`[` of a flow
    /// collection, first key/item of a block collection).
    pub value: Pos,
    /// For mappings: the keys, in document order (scalar keys only).
    pub keys: Vec<String>,
}

/// Index from node path to position, built from the YAML text.
#[derive(Debug, Clone, Default)]
pub struct PosIndex {
    nodes: HashMap<Vec<String>, NodePos>,
    /// Keys given twice in one mapping: (path of the second one, its key position,
    /// the first one's key position).
    duplicates: Vec<(Vec<String>, Pos, Pos)>,
    /// The first node nested deeper than [`MAX_INDEX_DEPTH`].
    too_deep: Option<Pos>,
}

impl PosIndex {
    /// Index the first document of `text`. A syntax error stops indexing silently
    /// (typed parsing reports it properly); what was indexed so far is kept.
    pub fn build(text: &str) -> PosIndex {
        let mut idx = PosIndex::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            match idx.next(&mut parser) {
                Some((Event::DocumentStart(_), _)) => break,
                Some(_) => continue,
                None => return idx,
            }
        }
        let mut path = Vec::new();
        let _ = idx.node(&mut parser, &mut path, None);
        idx
    }

    /// The next event; `None` at the end or at a syntax error. The scanner's own
    /// nesting limit (255 flow levels, reached before any event of a deeply nested
    /// flow collection is returned) counts as nesting too deep.
    fn next<'a, T: saphyr_parser::Input>(
        &mut self,
        parser: &mut Parser<'a, T>,
    ) -> Option<(Event<'a>, Span)> {
        match parser.next_event()? {
            Ok(x) => Some(x),
            Err(e) => {
                if e.info().contains("recursion limit") {
                    let m = e.marker();
                    self.too_deep.get_or_insert(Pos {
                        line: m.line(),
                        column: m.col() + 1,
                    });
                }
                None
            }
        }
    }

    /// Consume one node (its events) at `path`. Returns `None` when the stream
    /// ended or failed.
    fn node<'a, T: saphyr_parser::Input>(
        &mut self,
        parser: &mut Parser<'a, T>,
        path: &mut Vec<String>,
        key: Option<Pos>,
    ) -> Option<()> {
        let (ev, span) = self.next(parser)?;
        self.node_from(ev, span, parser, path, key)
    }

    fn node_from<'a, T: saphyr_parser::Input>(
        &mut self,
        ev: Event<'a>,
        span: Span,
        parser: &mut Parser<'a, T>,
        path: &mut Vec<String>,
        key: Option<Pos>,
    ) -> Option<()> {
        let here = Pos::from_span(&span);
        if path.len() > MAX_INDEX_DEPTH {
            self.too_deep.get_or_insert(here);
            return None;
        }
        match ev {
            Event::MappingStart(..) => {
                let mut keys = Vec::new();
                self.nodes.insert(
                    path.clone(),
                    NodePos {
                        key,
                        value: here,
                        keys: Vec::new(),
                    },
                );
                loop {
                    let (kev, kspan) = self.next(parser)?;
                    match kev {
                        Event::MappingEnd => break,
                        Event::Scalar(k, ..) => {
                            let k = k.into_owned();
                            let kpos = Pos::from_span(&kspan);
                            path.push(k.clone());
                            if keys.contains(&k) {
                                let first = self
                                    .nodes
                                    .get(path.as_slice())
                                    .and_then(|n| n.key)
                                    .unwrap_or_default();
                                self.duplicates.push((path.clone(), kpos, first));
                                // Index the repeated value somewhere harmless.
                                let mut scratch = PosIndex::default();
                                let r = scratch.node(parser, path, Some(kpos));
                                path.pop();
                                self.too_deep = self.too_deep.or(scratch.too_deep);
                                r?;
                                continue;
                            }
                            keys.push(k);
                            let r = self.node(parser, path, Some(kpos));
                            path.pop();
                            r?;
                        }
                        other => {
                            // Complex key: skip it and its value, unindexed.
                            let mut scratch = PosIndex::default();
                            let mut p = path.clone();
                            p.push("\u{0}complex".to_string());
                            let r = scratch
                                .node_from(other, kspan, parser, &mut p, None)
                                .and_then(|()| scratch.node(parser, &mut p, None));
                            self.too_deep = self.too_deep.or(scratch.too_deep);
                            r?;
                        }
                    }
                }
                if let Some(n) = self.nodes.get_mut(path.as_slice()) {
                    n.keys = keys;
                }
            }
            Event::SequenceStart(..) => {
                self.nodes.insert(
                    path.clone(),
                    NodePos {
                        key,
                        value: here,
                        keys: Vec::new(),
                    },
                );
                let mut i = 0usize;
                loop {
                    let (iev, ispan) = self.next(parser)?;
                    if matches!(iev, Event::SequenceEnd) {
                        break;
                    }
                    path.push(i.to_string());
                    let r = self.node_from(iev, ispan, parser, path, None);
                    path.pop();
                    r?;
                    i += 1;
                }
            }
            Event::Scalar(..) | Event::Alias(..) => {
                self.nodes.insert(
                    path.clone(),
                    NodePos {
                        key,
                        value: here,
                        keys: Vec::new(),
                    },
                );
            }
            _ => return None,
        }
        Some(())
    }

    /// The node at exactly `path`, if present in the file.
    pub fn get(&self, path: &[&str]) -> Option<&NodePos> {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.nodes.get(&owned)
    }

    /// Position of the value at `path`; falls back to the nearest ancestor present
    /// in the file (so a missing field points at the mapping that lacks it).
    pub fn value(&self, path: &[&str]) -> Pos {
        for n in (0..=path.len()).rev() {
            if let Some(node) = self.get(&path[..n]) {
                return if n == path.len() {
                    node.value
                } else {
                    node.key.unwrap_or(node.value)
                };
            }
        }
        Pos { line: 1, column: 1 }
    }

    /// Position of the key of `path` (or of its value when it has no key); falls back
    /// like [`PosIndex::value`].
    pub fn key(&self, path: &[&str]) -> Pos {
        match self.get(path) {
            Some(node) => node.key.unwrap_or(node.value),
            None => self.value(path),
        }
    }

    /// Keys given twice in one mapping: (path, position of the repeated key, position
    /// of the first one).
    pub fn duplicates(&self) -> &[(Vec<String>, Pos, Pos)] {
        &self.duplicates
    }

    /// Where the file first nests deeper than `MAX_INDEX_DEPTH` (indexing stopped
    /// there), if it does.
    pub fn too_deep(&self) -> Option<Pos> {
        self.too_deep
    }

    /// The keys of the mapping at `path`, in document order (empty if not a mapping).
    pub fn keys(&self, path: &[&str]) -> Vec<String> {
        self.get(path).map(|n| n.keys.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn positions_are_one_based_and_exact() {
        let text = "a:\n  b: 1\n  c: { d: x, e: [1, 2] }\nhosts:\n  watch.example: \"lab:x\"\nlist:\n  - p: 1\n  - p: 2\n";
        let idx = PosIndex::build(text);
        assert_eq!(idx.key(&["a", "b"]), p(2, 3));
        assert_eq!(idx.value(&["a", "b"]), p(2, 6));
        assert_eq!(idx.value(&["a", "c", "d"]), p(3, 11));
        assert_eq!(idx.value(&["a", "c", "e", "1"]), p(3, 21));
        assert_eq!(idx.value(&["hosts", "watch.example"]), p(5, 18));
        assert_eq!(idx.key(&["list", "1", "p"]), p(8, 5));
        assert_eq!(idx.keys(&["a"]), vec!["b".to_string(), "c".to_string()]);
        // Missing node: falls back to the nearest ancestor's key.
        assert_eq!(idx.value(&["a", "c", "zz"]), p(3, 3));
    }

    #[test]
    fn deep_nesting_stops_indexing_at_the_limit() {
        for text in [
            format!("a: 1\nb:\n  {}x\n", "- ".repeat(100_000)),
            format!("a: 1\nb: {}\n", "[".repeat(100_000)),
            format!("a: 1\n? {}{}\n: 1\n", "[".repeat(200), "]".repeat(200)),
        ] {
            let idx = PosIndex::build(&text);
            assert_eq!(idx.value(&["a"]), p(1, 4));
            let deepest = idx.nodes.keys().map(Vec::len).max().unwrap();
            assert!(deepest <= MAX_INDEX_DEPTH, "{deepest}");
            let at = idx
                .too_deep()
                .unwrap_or_else(|| panic!("not too deep: {:?}", &text[..20]));
            assert!(at.line == 2 || at.line == 3, "{at:?}");
        }
        // At the limit itself: indexed, not too deep.
        let text = format!("{}x\n", "- ".repeat(MAX_INDEX_DEPTH));
        let idx = PosIndex::build(&text);
        assert_eq!(idx.too_deep(), None);
        assert!(idx.get(&vec!["0"; MAX_INDEX_DEPTH]).is_some());
    }

    #[test]
    fn duplicate_keys_are_recorded() {
        let idx = PosIndex::build("a: 1\nb: 2\na: 3\n");
        assert_eq!(
            idx.duplicates(),
            &[(vec!["a".to_string()], p(3, 1), p(1, 1))]
        );
        assert_eq!(idx.value(&["a"]), p(1, 4));
    }
}
