//! Store-list edits as a fleet of agents shares them (`[fleet]` on, `docs/fleet.md`): what one
//! agent's changes look like on the fleet's edit stream, how they are read out of its outbox,
//! and how another agent's changes are applied here.
//!
//! An edit is one entry put, one entry removed (by an operator, an import's replace, an expiry),
//! or one part of a whole list (an import, sent as the list it left, in parts). Each carries the
//! id of the audit record it came from on its agent, which orders that agent's own edits of one
//! entry. Applying is idempotent: a put of the entry already held, or the removal of an entry
//! not there, writes nothing. Applied edits are written through [`Live`], durable and audited
//! like any other change, with the audit record's source naming the agent they came from
//! (`fleet <agent>`); such records are never sent out again.
//!
//! The outbox is the audit trail after the published mark (see the store's `fleet_rows`).
//!
//! Knows nothing of Redis, streams or the network: edits in and out as values.

use serde::{Deserialize, Serialize};

use super::overlay::{Live, WriteError};
use super::store::{AuditRecord, StoreError, StoredEntry, Who};

/// Entries per part of a whole list.
pub const LIST_PART: usize = 1_000;

/// The audit source of changes applied from the fleet starts so.
pub const FROM_FLEET: &str = "fleet ";

/// One change as the fleet's edit stream carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Edit {
    /// An entry added or replaced.
    Put {
        entry: StoredEntry,
        who: String,
        /// The audit record of the change on its agent.
        id: i64,
    },
    /// An entry removed (`why`: `remove` or `expire`).
    Remove {
        list: String,
        pattern: String,
        who: String,
        why: String,
        id: i64,
    },
    /// Part `part` (from 0) of `parts` of a whole list, which replaces the list once every part
    /// has arrived.
    List {
        list: String,
        who: String,
        id: i64,
        part: u32,
        parts: u32,
        entries: Vec<StoredEntry>,
    },
}

impl Edit {
    pub fn list(&self) -> &str {
        match self {
            Edit::Put { entry, .. } => &entry.list,
            Edit::Remove { list, .. } | Edit::List { list, .. } => list,
        }
    }

    /// The entry an edit of one entry is about: `(list, pattern)`.
    pub fn key(&self) -> Option<(String, String)> {
        match self {
            Edit::Put { entry, .. } => Some((entry.list.clone(), entry.pattern.clone())),
            Edit::Remove { list, pattern, .. } => Some((list.clone(), pattern.clone())),
            Edit::List { .. } => None,
        }
    }

    pub fn id(&self) -> i64 {
        match self {
            Edit::Put { id, .. } | Edit::Remove { id, .. } | Edit::List { id, .. } => *id,
        }
    }
}

/// The parts of a whole list, as edits.
pub fn list_parts(list: &str, who: &str, id: i64, entries: Vec<StoredEntry>) -> Vec<Edit> {
    let parts = entries.len().div_ceil(LIST_PART).max(1) as u32;
    let mut out = Vec::with_capacity(parts as usize);
    let mut it = entries.into_iter().peekable();
    for part in 0..parts {
        out.push(Edit::List {
            list: list.to_string(),
            who: who.to_string(),
            id,
            part,
            parts,
            entries: it.by_ref().take(LIST_PART).collect(),
        });
    }
    out
}

/// What the outbox holds after a mark: the edits, and the mark once they are sent.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub edits: Vec<Edit>,
    pub upto: i64,
}

/// Whether two versions of an entry say the same (times of writing aside).
pub fn same_entry(a: &StoredEntry, b: &StoredEntry) -> bool {
    a.list == b.list
        && a.pattern == b.pattern
        && a.action == b.action
        && a.category == b.category
        && a.reason == b.reason
        && a.source == b.source
        && a.expires == b.expires
}

impl Live {
    /// The edits audited after record `after`, at most about `max` records' worth; changes
    /// applied from the fleet are skipped (they came from it). An import is sent as the whole
    /// list it left, and ends the batch. When the trail was trimmed past `after` (Redis was
    /// away longer than `store.max_audit_records` changes), every list is sent whole.
    pub fn outbox(&self, after: i64, max: usize) -> Result<Outgoing, StoreError> {
        let (first, last) = self.store.audit_span()?;
        if after > 0 && first > after + 1 {
            return self.every_list(last);
        }
        let mut out = Outgoing {
            edits: Vec::new(),
            upto: after,
        };
        for r in self.store.changes_after(after, max)? {
            out.upto = r.id;
            if r.source
                .as_deref()
                .is_some_and(|s| s.starts_with(FROM_FLEET))
            {
                continue;
            }
            if r.what == "import" {
                out.edits.extend(self.whole_list(&r.list, &r.who, r.id)?);
                break;
            }
            if let Some(e) = edit_of(&r) {
                out.edits.push(e);
            }
        }
        Ok(out)
    }

    fn whole_list(&self, list: &str, who: &str, id: i64) -> Result<Vec<Edit>, StoreError> {
        let mut entries = Vec::new();
        self.store.for_each(Some(list), |e| {
            entries.push(e);
            true
        })?;
        Ok(list_parts(list, who, id, entries))
    }

    /// Every store list whole, as of audit record `upto`.
    fn every_list(&self, upto: i64) -> Result<Outgoing, StoreError> {
        let mut edits = Vec::new();
        for (name, _) in self.store.lists()? {
            edits.extend(self.whole_list(&name, "fleet", upto)?);
        }
        Ok(Outgoing { edits, upto })
    }

    /// Applies one edit of one entry from agent `agent` (a whole list goes through
    /// [`Live::apply_list`]); whether it changed anything. An entry that does not validate is
    /// refused and changes nothing.
    pub fn apply_edit(&self, agent: &str, edit: &Edit, now: i64) -> Result<bool, WriteError> {
        let source = format!("{FROM_FLEET}{agent}");
        match edit {
            Edit::Put { entry, who, .. } => {
                let held = self.store.get(&entry.list, &entry.pattern)?;
                if held.as_ref().is_some_and(|h| same_entry(h, entry)) {
                    return Ok(false);
                }
                let who = Who {
                    name: who,
                    source: Some(&source),
                };
                self.add(who, &entry.list, vec![entry.clone()], now)?;
                Ok(true)
            }
            Edit::Remove {
                list, pattern, who, ..
            } => {
                let who = Who {
                    name: who,
                    source: Some(&source),
                };
                Ok(self.remove(who, list, pattern, now)?.is_some())
            }
            Edit::List { .. } => Ok(false),
        }
    }

    /// Replaces store list `list` with `entries` (a whole list from the fleet, or its
    /// snapshot), unless it already holds exactly those; whether it changed anything. Every entry
    /// is checked first: one that does not validate refuses the whole list.
    pub fn apply_list(
        &self,
        agent: &str,
        who: &str,
        list: &str,
        mut entries: Vec<StoredEntry>,
        now: i64,
    ) -> Result<bool, WriteError> {
        let bad: Vec<String> = entries
            .iter_mut()
            .enumerate()
            .filter_map(|(i, e)| {
                e.list = list.to_string();
                super::overlay::validate_entry(e)
                    .err()
                    .map(|m| format!("entry {}: {m}", i + 1))
            })
            .collect();
        if !bad.is_empty() {
            return Err(WriteError::Rejected(bad));
        }
        entries.sort_by(|a, b| a.pattern.cmp(&b.pattern));
        entries.dedup_by(|a, b| a.pattern == b.pattern);
        let mut held = Vec::new();
        self.store.for_each(Some(list), |e| {
            held.push(e);
            true
        })?;
        if held.len() == entries.len() && held.iter().zip(&entries).all(|(a, b)| same_entry(a, b)) {
            return Ok(false);
        }
        let source = format!("{FROM_FLEET}{agent}");
        let who = Who {
            name: who,
            source: Some(&source),
        };
        self.import(who, list, entries, true, now, "from the fleet")?;
        Ok(true)
    }
}

/// The edit an audited change makes, if it is one of an entry.
fn edit_of(r: &AuditRecord) -> Option<Edit> {
    match r.what.as_str() {
        "add" | "update" => {
            let entry: StoredEntry = serde_json::from_value(r.after.clone()?).ok()?;
            Some(Edit::Put {
                entry,
                who: r.who.clone(),
                id: r.id,
            })
        }
        "remove" | "expire" => Some(Edit::Remove {
            list: r.list.clone(),
            pattern: r.pattern.clone()?,
            who: r.who.clone(),
            why: r.what.clone(),
            id: r.id,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::overlay::StoreRules;
    use crate::lists::store::{Store, StoreConfig};
    use crate::screening::{EntryAction, Number, Rules};
    use std::sync::Arc;

    fn live(dir: &std::path::Path) -> Live {
        let store = Arc::new(
            Store::open(&StoreConfig {
                data_dir: dir.to_path_buf(),
                ..StoreConfig::default()
            })
            .unwrap(),
        );
        let rules = Arc::new(StoreRules::load(&store).unwrap());
        Live::new(store, rules, None)
    }

    fn entry(p: &str, a: EntryAction) -> StoredEntry {
        StoredEntry {
            list: "main".into(),
            pattern: p.into(),
            action: a,
            category: "scam".into(),
            reason: "r".into(),
            source: String::new(),
            expires: None,
            created: 0,
            updated: 0,
        }
    }

    fn action(l: &Live, n: &str) -> Option<EntryAction> {
        l.rules
            .lookup(Number::parse_e164(n).unwrap(), 100)
            .map(|m| m.action)
    }

    /// One agent's changes go out as edits, are applied on another (enforced at once, audited
    /// with where they came from), and are not sent out again from there; applying twice
    /// changes nothing.
    #[test]
    fn edits_go_out_apply_once_and_never_echo() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (live(da.path()), live(db.path()));
        a.add(
            "alice",
            "main",
            vec![entry("+12025550143", EntryAction::Block)],
            10,
        )
        .unwrap();
        a.add(
            "alice",
            "main",
            vec![entry("+1900*", EntryAction::Warn)],
            11,
        )
        .unwrap();
        a.remove("bob", "main", "+1900*", 12).unwrap();
        let out = a.outbox(0, 100).unwrap();
        assert_eq!(out.upto, 3);
        let ops: Vec<(String, i64)> = out
            .edits
            .iter()
            .map(|e| (serde_json::to_value(e).unwrap()["op"].to_string(), e.id()))
            .collect();
        assert_eq!(
            ops,
            [
                ("\"put\"".to_string(), 1),
                ("\"put\"".to_string(), 2),
                ("\"remove\"".to_string(), 3)
            ]
        );
        for e in &out.edits {
            let wire = serde_json::to_string(e).unwrap();
            let back: Edit = serde_json::from_str(&wire).unwrap();
            assert_eq!(&back, e);
            assert!(b.apply_edit("agent-a", &back, 20).unwrap());
            assert!(!b.apply_edit("agent-a", &back, 21).unwrap(), "idempotent");
        }
        assert_eq!(action(&b, "+12025550143"), Some(EntryAction::Block));
        assert_eq!(action(&b, "+19005550100"), None);
        let audit = b.store.audit(0, 10).unwrap();
        assert!(audit
            .iter()
            .all(|r| r.source.as_deref() == Some("fleet agent-a")));
        assert_eq!(audit[0].who, "alice");
        let echo = b.outbox(0, 100).unwrap();
        assert!(echo.edits.is_empty(), "{:?}", echo.edits);
        assert_eq!(echo.upto, audit.last().unwrap().id);
        // A bad entry from the fleet is refused and changes nothing.
        let mut bad = entry("not a number", EntryAction::Block);
        bad.list = "main".into();
        let e = Edit::Put {
            entry: bad,
            who: "x".into(),
            id: 9,
        };
        assert!(b.apply_edit("agent-a", &e, 22).is_err());
        assert_eq!(b.store.total(), 1);
    }

    /// An import goes out as the whole list in parts, and a whole list replaces the list on the
    /// agent that applies it, unless it already holds the same.
    #[test]
    fn an_import_goes_out_whole_and_replaces_the_list() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (live(da.path()), live(db.path()));
        b.add(
            "old",
            "main",
            vec![entry("+13035550199", EntryAction::Block)],
            1,
        )
        .unwrap();
        let many: Vec<StoredEntry> = (0..(LIST_PART + 5))
            .map(|i| entry(&format!("+1202555{i:04}"), EntryAction::Warn))
            .collect();
        a.import("ops", "main", many, false, 10, "file.csv")
            .unwrap();
        let out = a.outbox(0, 100).unwrap();
        assert_eq!(out.edits.len(), 2);
        let mut all = Vec::new();
        for e in &out.edits {
            let Edit::List {
                part,
                parts,
                entries,
                ..
            } = e
            else {
                panic!("{e:?}")
            };
            assert_eq!((*parts, all.len() / LIST_PART), (2, *part as usize));
            all.extend(entries.iter().cloned());
        }
        assert!(b
            .apply_list("agent-a", "ops", "main", all.clone(), 20)
            .unwrap());
        assert_eq!(b.store.total() as usize, LIST_PART + 5);
        assert_eq!(action(&b, "+13035550199"), None, "replaced");
        assert_eq!(action(&b, "+12025550003"), Some(EntryAction::Warn));
        assert!(!b.apply_list("agent-a", "ops", "main", all, 21).unwrap());
        // Only B's own change goes out from B; the list it applied came from the fleet.
        let out = b.outbox(0, 100).unwrap();
        assert_eq!(out.edits.len(), 1, "{:?}", out.edits);
        assert_eq!(
            out.edits[0].key(),
            Some(("main".to_string(), "+13035550199".to_string()))
        );
    }
}
