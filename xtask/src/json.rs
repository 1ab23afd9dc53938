//! Reading back what the tools wrote: JSON into typed structs, where a
//! missing, null or mistyped field is an error that names the file and the
//! field (`before.p95_ms`), never a silent 0.
//!
//! serde's own errors name a missing field without its parents and a
//! mistyped one not at all; [`from_value`] runs the typed `Deserialize` over
//! a parsed document through a deserializer that records where it is, so
//! every error carries the dotted path from the document's root.
//!
//! The files with a contract of their own (loadgen's summary, `loadgen
//! capacity`'s report: [`model::contract::Contract`]) are read with
//! [`read_contract`], which checks their `schema_version` first.

use std::fmt;
use std::path::Path;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use model::contract::Contract;

use crate::error::TaskError;

/// Reads `path` and deserializes it.
pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<T, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Deserializes `text`, read from `origin` (named in every error).
pub(crate) fn parse<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, TaskError> {
    let problem = |problem: String| TaskError::Json {
        path: origin.to_owned(),
        problem,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| problem(format!("not valid JSON: {e}")))?;
    from_value(&value).map_err(|e| problem(e.to_string()))
}

/// Reads a file with a contract of its own (`model::summary::RunSummary`,
/// `model::capacity::CapacityReport`): its `schema_version` first, so a
/// file of another version is refused as such, then every field.
pub(crate) fn read_contract<T: Contract>(path: &Path) -> Result<T, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_contract(&text, path)
}

/// [`read_contract`] of `text`, read from `origin`.
pub(crate) fn parse_contract<T: Contract>(text: &str, origin: &Path) -> Result<T, TaskError> {
    let problem = |problem: String| TaskError::Json {
        path: origin.to_owned(),
        problem,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| problem(format!("not valid JSON: {e}")))?;
    model::contract::check_version::<T>(&value).map_err(problem)?;
    from_value(&value).map_err(|e| problem(e.to_string()))
}

/// Deserializes a parsed document, errors naming the field's path.
pub(crate) fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    T::deserialize(At(value))
}

/// For an `Option` field that must be present but may be `null` (a
/// quantile of no successful request): without it, serde reads a missing
/// `Option` as `None`, the silent default this module exists to prevent.
/// Use as `#[serde(deserialize_with = "json::nullable")]`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// What is wrong with a document, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// From the root to the value that is wrong (for a missing field: to
    /// the object that lacks it).
    path: Vec<Segment>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Missing(&'static str),
    Other(String),
}

impl FieldError {
    /// The error, one level further from the root: inside `segment`.
    fn inside(mut self, segment: Segment) -> Self {
        self.path.insert(0, segment);
        self
    }

    /// The dotted path (`before.p95_ms`, `runs[2].rps`); the missing field
    /// included.
    pub(crate) fn field(&self) -> String {
        let mut path = String::new();
        let push_key = |path: &mut String, key: &str| {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        };
        for segment in &self.path {
            match segment {
                Segment::Key(key) => push_key(&mut path, key),
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        if let Kind::Missing(field) = self.kind {
            push_key(&mut path, field);
        }
        path
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Missing(_) => write!(f, "missing field `{}`", self.field()),
            Kind::Other(message) if self.path.is_empty() => f.write_str(message),
            Kind::Other(message) => write!(f, "field `{}`: {message}", self.field()),
        }
    }
}

impl std::error::Error for FieldError {}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: Vec::new(),
            kind: Kind::Other(msg.to_string()),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            path: Vec::new(),
            kind: Kind::Missing(field),
        }
    }

    /// As serde's, but JSON's `null` by its name (serde says "unit value").
    fn invalid_type(unexpected: de::Unexpected, expected: &dyn de::Expected) -> Self {
        match unexpected {
            de::Unexpected::Unit => {
                Self::custom(format_args!("invalid type: null, expected {expected}"))
            }
            other => Self::custom(format_args!("invalid type: {other}, expected {expected}")),
        }
    }
}

/// A deserializer over one value of the document.
struct At<'a>(&'a Value);

impl<'de> Deserializer<'de> for At<'_> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Items {
                items: items.iter().enumerate(),
            }),
            Value::Object(map) => visitor.visit_map(Fields {
                fields: map.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    /// An enum of unit variants is a string naming one (`"client"`);
    /// enums tagged inside an object go through `deserialize_any`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::String(s) => {
                let variant: de::value::StrDeserializer<'_, FieldError> =
                    s.as_str().into_deserializer();
                visitor.visit_enum(variant)
            }
            Value::Null => Err(<FieldError as de::Error>::custom(format_args!(
                "invalid type: null, expected {}",
                &visitor as &dyn de::Expected
            ))),
            other => Err(<FieldError as de::Error>::custom(format_args!(
                "invalid type: {other}, expected {}",
                &visitor as &dyn de::Expected
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Items<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = FieldError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FieldError> {
        match self.items.next() {
            Some((i, value)) => seed
                .deserialize(At(value))
                .map(Some)
                .map_err(|e| e.inside(Segment::Index(i))),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A key of a JSON object. JSON keys are strings, but a map may be keyed
/// by numbers written as strings (`status_codes`: `{"200": 400}`), as
/// serde_json reads them.
struct Key<'a>(&'a str);

impl Key<'_> {
    fn number<T: std::str::FromStr>(&self) -> Result<T, FieldError> {
        self.0.parse().map_err(|_| {
            <FieldError as de::Error>::custom(format_args!(
                "invalid key {:?}, expected a whole number",
                self.0
            ))
        })
    }
}

macro_rules! number_keys {
    ($($method:ident $visit:ident,)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
            visitor.$visit(self.number()?)
        })*
    };
}

impl<'de> Deserializer<'de> for Key<'_> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        let key: de::value::StrDeserializer<'_, FieldError> = self.0.into_deserializer();
        key.deserialize_any(visitor)
    }

    number_keys! {
        deserialize_u8 visit_u8,
        deserialize_u16 visit_u16,
        deserialize_u32 visit_u32,
        deserialize_u64 visit_u64,
        deserialize_i8 visit_i8,
        deserialize_i16 visit_i16,
        deserialize_i32 visit_i32,
        deserialize_i64 visit_i64,
    }

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Fields<'a> {
    fields: serde_json::map::Iter<'a>,
    value: Option<(&'a str, &'a Value)>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        match self.fields.next() {
            Some((key, value)) => {
                self.value = Some((key, value));
                seed.deserialize(Key(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| <FieldError as de::Error>::custom("a value asked for before its key"))?;
        seed.deserialize(At(value))
            .map_err(|e| e.inside(Segment::Key(key.to_owned())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Doc {
        before: Side,
        runs: Vec<Run>,
        #[serde(default)]
        counts: BTreeMap<String, u64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Side {
        #[serde(deserialize_with = "nullable")]
        p95_ms: Option<f64>,
        total: u64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Run {
        rps: f64,
    }

    fn problem(text: &str) -> String {
        match parse::<Doc>(text, Path::new("/out/doc.json")) {
            Err(TaskError::Json { path, problem }) => {
                assert_eq!(path, Path::new("/out/doc.json"));
                problem
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn a_whole_document_reads() {
        let doc: Doc = parse(
            r#"{"before": {"p95_ms": 12.5, "total": 400, "extra": [1]}, "runs": [{"rps": 3}], "counts": {"200": 7}}"#,
            Path::new("doc.json"),
        )
        .unwrap();
        assert_eq!(
            doc,
            Doc {
                before: Side {
                    p95_ms: Some(12.5),
                    total: 400
                },
                runs: vec![Run { rps: 3.0 }],
                counts: BTreeMap::from([("200".to_owned(), 7)]),
            }
        );
    }

    #[test]
    fn a_missing_field_is_named_with_its_parents() {
        assert_eq!(
            problem(r#"{"before": {"p95": 1.0, "total": 4}, "runs": []}"#),
            "missing field `before.p95_ms`"
        );
        assert_eq!(problem(r#"{"runs": []}"#), "missing field `before`");
        assert_eq!(
            problem(r#"{"before": {"p95_ms": 1, "total": 4}, "runs": [{"rps": 1}, {"rate": 2}]}"#),
            "missing field `runs[1].rps`"
        );
        let err = TaskError::Json {
            path: "/out/doc.json".into(),
            problem: problem(r#"{"runs": []}"#),
        };
        assert_eq!(err.to_string(), "/out/doc.json: missing field `before`");
    }

    #[test]
    fn a_mistyped_or_null_field_is_named() {
        assert_eq!(
            problem(r#"{"before": {"p95_ms": 1, "total": null}, "runs": []}"#),
            "field `before.total`: invalid type: null, expected u64"
        );
        assert_eq!(
            problem(r#"{"before": {"p95_ms": "fast", "total": 1}, "runs": []}"#),
            "field `before.p95_ms`: invalid type: string \"fast\", expected f64"
        );
        assert_eq!(
            problem(r#"{"before": {"p95_ms": 1, "total": 1}, "runs": [], "counts": {"200": -1}}"#),
            "field `counts.200`: invalid value: integer `-1`, expected u64"
        );
        assert_eq!(
            problem(r#""text""#),
            "invalid type: string \"text\", expected struct Doc"
        );
        assert!(problem("{").starts_with("not valid JSON: "));
    }

    #[test]
    fn numbers_as_keys_read_as_numbers() {
        let codes: BTreeMap<u16, u64> =
            parse(r#"{"200": 7, "503": 1}"#, Path::new("codes.json")).unwrap();
        assert_eq!(codes, BTreeMap::from([(200, 7), (503, 1)]));
        let err = parse::<BTreeMap<u16, u64>>(r#"{"ok": 7}"#, Path::new("codes.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "codes.json: invalid key \"ok\", expected a whole number"
        );
    }

    /// loadgen's summary and capacity report read through `model`'s types,
    /// their version first: what the tools write is what xtask reads.
    #[test]
    fn contracts_read_through_the_model_types_and_another_version_is_refused() {
        use model::summary::RunSummary;
        let summary = RunSummary {
            schema_version: model::summary::SCHEMA_VERSION,
            total: 5,
            p50_ms: Some(1.25),
            status_codes: BTreeMap::from([(200, 5)]),
            ..RunSummary::default()
        };
        let text = summary.to_json().unwrap();
        let back: RunSummary = parse_contract(&text, Path::new("s.json")).unwrap();
        assert_eq!(back, summary);
        let older = text.replace("\"schema_version\": 2", "\"schema_version\": 1");
        let err = parse_contract::<RunSummary>(&older, Path::new("/r/s.json"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/r/s.json: `schema_version` is 1"), "{err}");
        let renamed = text.replace("\"p95_ms\"", "\"p95\"");
        let err = parse_contract::<RunSummary>(&renamed, Path::new("s.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "s.json: missing field `p95_ms`");
    }

    #[test]
    fn unit_enums_read_from_their_names_and_others_are_named() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "snake_case")]
        enum Who {
            Client,
            Server,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Pick {
            who: Who,
        }
        let origin = Path::new("pick.json");
        let pick: Pick = parse(r#"{"who": "server"}"#, origin).unwrap();
        assert_eq!(pick.who, Who::Server);
        let problem = |text: &str| match parse::<Pick>(text, origin) {
            Err(TaskError::Json { problem, .. }) => problem,
            other => panic!("expected a JSON error, got {other:?}"),
        };
        assert_eq!(
            problem(r#"{"who": "nobody"}"#),
            "field `who`: unknown variant `nobody`, expected `client` or `server`"
        );
        assert_eq!(
            problem(r#"{"who": 3}"#),
            "field `who`: invalid type: 3, expected enum Who"
        );
        assert_eq!(problem("{}"), "missing field `who`");
        let _ = Who::Client;
    }

    #[test]
    fn nullable_fields_must_be_present_but_may_be_null() {
        let doc: Doc = parse(
            r#"{"before": {"p95_ms": null, "total": 0}, "runs": []}"#,
            Path::new("doc.json"),
        )
        .unwrap();
        assert_eq!(doc.before.p95_ms, None);
        assert_eq!(
            problem(r#"{"before": {"total": 0}, "runs": []}"#),
            "missing field `before.p95_ms`"
        );
    }
}
