//! The catalog query language, close to ERP5's:
//! `portal_type:"Data Stream" AND title:%sensor% AND modification_date:>=2026-01-01`.
//!
//! - `key:value` (=), `key:>=v`, `<=`, `>`, `<`, `!=`, `=`; a `%` in a value makes it a
//!   LIKE pattern (case-insensitive; quote it to include spaces: `title:"%hall 3%"`); `key:[a TO b]` is a range; `key:(a, b, c)` is IN;
//!   `key:NULL` / `key:!=NULL` test for absence.
//! - `AND` (also implied between terms), `OR`, `NOT`, parentheses. A document without a
//!   value for a key matches `key:!=v` and `NOT key:v`, and no other comparison.
//! - Words or "quoted phrases" without a key are full-text terms.
//!
//! Syntax errors say at which character (1-based) the query went wrong.
//!
//! Queries come from anyone (Anonymous may search what it may View), so their size is
//! bounded before any work is done: [`MAX_QUERY_CHARS`] characters, [`MAX_DEPTH`] levels
//! of parentheses and `NOT`, [`MAX_TERMS`] terms (each full-text word counts) and
//! [`MAX_LIST_VALUES`] values in all `key:(a, b, …)` lists. The parser recurses once per
//! level, so the depth bound is also what keeps a deep query from exhausting the stack;
//! the term bound keeps the SQL it compiles to inside the databases' expression limits.

use crate::model::error::{CoreError, CoreResult};

/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 8192;
/// Deepest nesting of parentheses and `NOT` accepted.
pub const MAX_DEPTH: usize = 32;
/// Most terms (comparisons, ranges, lists, full-text words) in one query.
pub const MAX_TERMS: usize = 128;
/// Most values in all `key:(a, b, …)` lists of one query together.
pub const MAX_LIST_VALUES: usize = 1000;

/// A parsed query expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// One must hold.
    Or(Vec<Expr>),
    /// Must not hold.
    Not(Box<Expr>),
    /// `key <op> value`.
    Compare {
        /// Catalog key.
        key: String,
        /// Operator.
        op: Op,
        /// Literal as written.
        value: String,
    },
    /// `key:(a, b)`.
    In {
        /// Catalog key.
        key: String,
        /// Literals.
        values: Vec<String>,
    },
    /// `key:[lo TO hi]`, both ends included.
    Range {
        /// Catalog key.
        key: String,
        /// Lower bound.
        low: String,
        /// Upper bound.
        high: String,
    },
    /// `key:NULL` (or `key:!=NULL` when negated).
    IsNull {
        /// Catalog key.
        key: String,
        /// `!=NULL`.
        negated: bool,
    },
    /// Full-text words or phrase.
    Text(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `%` pattern.
    Like,
}

/// Parses a query string; an empty string is `None` (everything).
pub fn parse(input: &str) -> CoreResult<Option<Expr>> {
    let chars = input.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(CoreError::BadRequest(format!(
            "the query has {chars} characters; at most {MAX_QUERY_CHARS} are accepted"
        )));
    }
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        terms: 0,
        list_values: 0,
    };
    p.ws();
    if p.at_end() {
        return Ok(None);
    }
    let expr = p.or()?;
    p.ws();
    if !p.at_end() {
        return Err(p.error("an operator (AND, OR) or the end of the query"));
    }
    Ok(Some(expr))
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Open parentheses and `NOT`s around the current position.
    depth: usize,
    /// Terms read so far.
    terms: usize,
    /// List values read so far.
    list_values: usize,
}

impl Parser {
    fn error(&self, expected: &str) -> CoreError {
        let found = match self.chars.get(self.pos) {
            Some(c) => format!("'{c}'"),
            None => "the end".to_owned(),
        };
        CoreError::BadRequest(format!(
            "query syntax error at position {}: expected {expected}, found {found}",
            self.pos + 1
        ))
    }
    /// Enters one level of nesting, refusing past [`MAX_DEPTH`].
    fn deeper(&mut self) -> CoreResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(CoreError::BadRequest(format!(
                "query nested too deeply at position {}: at most {MAX_DEPTH} levels of parentheses and NOT",
                self.pos + 1
            )));
        }
        Ok(())
    }
    /// Counts `n` more terms, refusing past [`MAX_TERMS`].
    fn count_terms(&mut self, n: usize) -> CoreResult<()> {
        self.terms += n;
        if self.terms > MAX_TERMS {
            return Err(CoreError::BadRequest(format!(
                "the query has more than {MAX_TERMS} terms (at position {})",
                self.pos + 1
            )));
        }
        Ok(())
    }
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.pos + n
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.pos += n;
            true
        } else {
            false
        }
    }
    /// A keyword (AND, OR, NOT, TO) followed by a separator.
    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        if self.eat_str(kw)
            && self
                .peek()
                .is_none_or(|c| c.is_whitespace() || c == '(' || c == '"')
        {
            return true;
        }
        self.pos = save;
        false
    }

    fn or(&mut self) -> CoreResult<Expr> {
        let mut items = vec![self.and()?];
        loop {
            self.ws();
            if self.keyword("OR") {
                items.push(self.and()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> CoreResult<Expr> {
        let mut items = vec![self.unary()?];
        loop {
            self.ws();
            if self.at_end() || self.peek() == Some(')') {
                break;
            }
            let save = self.pos;
            if self.keyword("OR") {
                self.pos = save;
                break;
            }
            self.keyword("AND");
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> CoreResult<Expr> {
        self.ws();
        if self.keyword("NOT") {
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> CoreResult<Expr> {
        self.ws();
        if self.eat('(') {
            self.deeper()?;
            let inner = self.or()?;
            self.ws();
            if !self.eat(')') {
                return Err(self.error("')'"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        if self.peek() == Some('"') {
            let phrase = self.quoted()?;
            self.count_terms(phrase.split_whitespace().count().max(1))?;
            return Ok(Expr::Text(phrase));
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        if self.pos > start && self.peek() == Some(':') {
            let key: String = self.chars[start..self.pos].iter().collect();
            self.pos += 1;
            self.count_terms(1)?;
            return self.value(key);
        }
        // A full-text word: up to whitespace or a parenthesis.
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && c != '(' && c != ')')
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("a term (key:value, a word or \"a phrase\")"));
        }
        self.count_terms(1)?;
        Ok(Expr::Text(self.chars[start..self.pos].iter().collect()))
    }

    fn quoted(&mut self) -> CoreResult<String> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return Err(self.error("a closing '\"' for the quote opened here"));
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') if self.chars.get(self.pos + 1).is_some() => {
                    out.push(self.chars[self.pos + 1]);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// A literal: quoted, or bare up to whitespace, ')' , ']' or ','. Returns (text, quoted).
    fn literal(&mut self) -> CoreResult<(String, bool)> {
        if self.peek() == Some('"') {
            return Ok((self.quoted()?, true));
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, ')' | ']' | ',' | '(' | '['))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("a value"));
        }
        Ok((self.chars[start..self.pos].iter().collect(), false))
    }

    fn value(&mut self, key: String) -> CoreResult<Expr> {
        if self.eat('[') {
            self.ws();
            let (low, _) = self.literal()?;
            self.ws();
            if !self.keyword("TO") {
                return Err(self.error("TO"));
            }
            self.ws();
            let (high, _) = self.literal()?;
            self.ws();
            if !self.eat(']') {
                return Err(self.error("']'"));
            }
            return Ok(Expr::Range { key, low, high });
        }
        if self.eat('(') {
            let mut values = Vec::new();
            loop {
                self.ws();
                self.list_values += 1;
                if self.list_values > MAX_LIST_VALUES {
                    return Err(CoreError::BadRequest(format!(
                        "the query's lists hold more than {MAX_LIST_VALUES} values (at position {})",
                        self.pos + 1
                    )));
                }
                values.push(self.literal()?.0);
                self.ws();
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.error("',' or ')'"));
                }
            }
            return Ok(Expr::In { key, values });
        }
        let op = if self.eat_str(">=") {
            Some(Op::Ge)
        } else if self.eat_str("<=") {
            Some(Op::Le)
        } else if self.eat_str("!=") {
            Some(Op::Ne)
        } else if self.eat('>') {
            Some(Op::Gt)
        } else if self.eat('<') {
            Some(Op::Lt)
        } else if self.eat('=') {
            Some(Op::Eq)
        } else {
            None
        };
        let (value, quoted) = self.literal()?;
        if !quoted && value == "NULL" {
            return match op {
                None | Some(Op::Eq) => Ok(Expr::IsNull {
                    key,
                    negated: false,
                }),
                Some(Op::Ne) => Ok(Expr::IsNull { key, negated: true }),
                Some(_) => Err(CoreError::BadRequest(format!(
                    "NULL can only be compared with = or != (key {key})"
                ))),
            };
        }
        let op = match op {
            None if value.contains('%') => Op::Like,
            None => Op::Eq,
            Some(op) => op,
        };
        Ok(Expr::Compare { key, op, value })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn cmp(key: &str, op: Op, value: &str) -> Expr {
        Expr::Compare {
            key: key.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn parses_the_erp5_style_example() {
        let e = parse(
            r#"portal_type:"Data Stream" AND title:%sensor% AND modification_date:>=2026-01-01"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            e,
            Expr::And(vec![
                cmp("portal_type", Op::Eq, "Data Stream"),
                cmp("title", Op::Like, "%sensor%"),
                cmp("modification_date", Op::Ge, "2026-01-01"),
            ])
        );
    }

    #[test]
    fn precedence_groups_ranges_lists_nulls_and_text() {
        let e = parse("a:1 OR b:2 c:3").unwrap().unwrap();
        assert_eq!(
            e,
            Expr::Or(vec![
                cmp("a", Op::Eq, "1"),
                Expr::And(vec![cmp("b", Op::Eq, "2"), cmp("c", Op::Eq, "3")])
            ])
        );
        let e = parse(
            "NOT (a:1 OR a:2) size:[10 TO 20] id:(1, 2,3) reference:NULL x:!=NULL pump \"hall 3\"",
        )
        .unwrap()
        .unwrap();
        let Expr::And(items) = e else { panic!() };
        assert_eq!(
            items[0],
            Expr::Not(Box::new(Expr::Or(vec![
                cmp("a", Op::Eq, "1"),
                cmp("a", Op::Eq, "2")
            ])))
        );
        assert_eq!(
            items[1],
            Expr::Range {
                key: "size".into(),
                low: "10".into(),
                high: "20".into()
            }
        );
        assert_eq!(
            items[2],
            Expr::In {
                key: "id".into(),
                values: vec!["1".into(), "2".into(), "3".into()]
            }
        );
        assert_eq!(
            items[3],
            Expr::IsNull {
                key: "reference".into(),
                negated: false
            }
        );
        assert_eq!(
            items[4],
            Expr::IsNull {
                key: "x".into(),
                negated: true
            }
        );
        assert_eq!(items[5], Expr::Text("pump".into()));
        assert_eq!(items[6], Expr::Text("hall 3".into()));
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(
            parse("t:2026-01-01T10:00:00Z").unwrap().unwrap(),
            cmp("t", Op::Eq, "2026-01-01T10:00:00Z")
        );
    }

    #[test]
    fn syntax_errors_point_at_the_position() {
        let err = parse("title:x AND (size:>3").unwrap_err().to_string();
        assert!(err.contains("position 21") && err.contains("')'"), "{err}");
        let err = parse("title:\"open").unwrap_err().to_string();
        assert!(err.contains("position 7"), "{err}");
        let err = parse("size:[1 20]").unwrap_err().to_string();
        assert!(err.contains("position 9") && err.contains("TO"), "{err}");
        let err = parse("a:1 )").unwrap_err().to_string();
        assert!(err.contains("position 5"), "{err}");
        let err = parse("size:>NULL").unwrap_err().to_string();
        assert!(err.contains("NULL"), "{err}");
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        // Deep nesting of either kind is refused with a message, not a stack overflow.
        for deep in [
            format!("{}title:a{}", "(".repeat(5000), ")".repeat(5000)),
            format!("{}title:a", "NOT ".repeat(7000)),
        ] {
            let query = &deep[..deep.len().min(MAX_QUERY_CHARS)];
            let err = parse(query).unwrap_err().to_string();
            assert!(err.contains("nested too deeply"), "{err}");
        }
        let at_limit = format!(
            "{}title:a{}",
            "(NOT ".repeat(MAX_DEPTH / 2),
            ")".repeat(MAX_DEPTH / 2)
        );
        assert!(parse(&at_limit).is_ok());
        let over = format!(
            "{}title:a{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&over).is_err());

        let terms = |n: usize| vec!["title:a"; n].join(" AND ");
        assert!(parse(&terms(MAX_TERMS)).is_ok());
        let err = parse(&terms(MAX_TERMS + 1)).unwrap_err().to_string();
        assert!(err.contains("terms"), "{err}");
        let words = format!("\"{}\"", vec!["w"; MAX_TERMS + 1].join(" "));
        assert!(parse(&words).is_err(), "a phrase's words count as terms");

        let list = |n: usize| format!("id:({})", vec!["1"; n].join(","));
        assert!(parse(&list(MAX_LIST_VALUES)).is_ok());
        assert!(parse(&list(MAX_LIST_VALUES + 1)).is_err());
        let err = parse(&"a".repeat(MAX_QUERY_CHARS + 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("characters"), "{err}");
    }
}
