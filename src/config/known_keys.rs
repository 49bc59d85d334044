//! The keys each table of the file accepts, read from the serde types in
//! [`super::raw`] themselves (so the list cannot drift from what is
//! parsed), and the "did you mean" suggestion for an unknown key.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::raw::*;
use super::source::{KeyPath, Seg};

/// The keys the table at `parent` accepts; empty for a table whose keys
/// are names (`[identity.*]` itself, `claims_equal`, ...).
pub fn known_keys(parent: &KeyPath) -> Keys {
    use Seg::{Index as I, Key as K};
    let segs: Vec<(bool, &str)> = parent
        .0
        .iter()
        .map(|s| match s {
            K(k) => (true, k.as_str()),
            I(_) => (false, ""),
        })
        .collect();
    match segs.as_slice() {
        [] => fields::<RawConfig>(),
        [(true, "server")] => fields::<RawServer>(),
        [(true, "limits")] => fields::<RawLimits>(),
        [(true, "audit")] => fields::<RawAudit>(),
        [(true, "cluster")] => fields::<RawCluster>(),
        [(true, "outbound")] => fields::<RawOutbound>(),
        [(true, "grants")] => fields::<RawGrants>(),
        [(true, "identity"), (true, _)] => fields::<RawIdentity>(),
        [(true, "zoom_app"), (true, _)] => fields::<RawZoomApp>(),
        [(true, "zoom_user"), (true, _)] => fields::<RawZoomUser>(),
        [(true, "credential"), (true, _)] => fields::<RawCredential>(),
        [(true, "webhook"), (true, _)] => fields::<RawWebhook>(),
        [(true, "cors"), (true, _)] => fields::<RawCors>(),
        [(true, "route"), (false, _)] => fields::<RawRoute>(),
        [(true, "route"), (false, _), (true, "authorize")] => fields::<RawAuthorize>(),
        [(true, "route"), (false, _), (true, "inject"), (false, _)] => fields::<RawInject>(),
        [(true, "route"), (false, _), (true, "respond")] => fields::<RawRespond>(),
        [(true, "route"), (false, _), (true, "zoom_user")] => fields::<RawZoomUserRoute>(),
        _ => &[],
    }
}

/// The keys of one table.
type Keys = &'static [&'static str];

/// "did you mean `…`?" for the unknown key `path`: the closest key its
/// table accepts (by edit distance, ignoring case), or the route table a
/// route-level key belongs in (`roles_any` goes in `authorize = { ... }`).
pub fn suggestion(path: &KeyPath) -> Option<String> {
    let (Some(Seg::Key(unknown)), Some(parent)) = (path.0.last(), parent_of(path)) else {
        return None;
    };
    let wanted = unknown.to_ascii_lowercase();
    let close = known_keys(&parent)
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&wanted, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(wanted.len()) / 3).max(1))
        .min();
    if let Some((_, k)) = close {
        return Some(format!("did you mean `{k}`?"));
    }
    let in_route = matches!(parent.0.as_slice(), [Seg::Key(r), Seg::Index(_)] if r == "route");
    if in_route {
        // Route keys that live inside one of the route's inline tables.
        for (table, keys) in [
            ("authorize", fields::<RawAuthorize>()),
            ("respond", fields::<RawRespond>()),
            ("inject", fields::<RawInject>()),
        ] {
            if keys.contains(&wanted.as_str()) {
                return Some(format!("`{wanted}` belongs in `{table} = {{ ... }}`"));
            }
        }
    }
    None
}

fn parent_of(path: &KeyPath) -> Option<KeyPath> {
    let n = path.0.len().checked_sub(1)?;
    Some(KeyPath(path.0[..n].to_vec()))
}

/// The field names a derived `Deserialize` struct asks for: a deserializer
/// that records them and stops.
fn fields<T: for<'de> Deserialize<'de>>() -> Keys {
    struct Introspect<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Introspect<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect(&mut out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segs: &[&str]) -> KeyPath {
        KeyPath(
            segs.iter()
                .map(|s| match s.parse() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key((*s).to_owned()),
                })
                .collect(),
        )
    }

    #[test]
    fn keys_come_from_the_raw_types() {
        assert!(known_keys(&at(&["route", "0"])).contains(&"claims_to_headers"));
        assert!(known_keys(&at(&["identity", "corp"])).contains(&"roles_claim"));
        assert!(known_keys(&at(&["route", "3", "inject", "1"])).contains(&"meeting_param"));
        assert!(known_keys(&at(&["route", "0", "authorize", "claims_equal"])).is_empty());
    }

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        let s = |p: &[&str]| suggestion(&at(p));
        assert_eq!(
            s(&["identity", "corp", "tenant_claims"]).as_deref(),
            Some("did you mean `tenant_claim`?")
        );
        assert_eq!(
            s(&["route", "0", "authenticaton"]).as_deref(),
            Some("did you mean `authenticate`?")
        );
        assert_eq!(
            s(&["server", "Listen"]).as_deref(),
            Some("did you mean `listen`?")
        );
        assert_eq!(
            s(&["identities"]).as_deref(),
            Some("did you mean `identity`?")
        );
        assert_eq!(
            s(&["route", "2", "roles_any"]).as_deref(),
            Some("`roles_any` belongs in `authorize = { ... }`")
        );
        assert_eq!(s(&["server", "frobnicate"]), None);
    }
}
