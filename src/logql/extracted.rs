//! The labels the pipeline's stages set on one line, kept for speed: a short list sorted by
//! name whose strings keep their buffers from line to line, so a scan that parses millions of
//! lines allocates for the first ones only. A line with many keys (a JSON object of 40,000)
//! moves its labels into a map past [`MANY`], so that setting each costs a logarithm, not a
//! shift of the whole list: parsing stays linear in the line.

use std::collections::BTreeMap;

/// Labels set on one line, by name (sorted, as a map's).
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// `slots[..len]` are the labels; the rest are buffers kept for the next line.
    slots: Vec<(String, String)>,
    len: usize,
    /// Every label, once a line has more than [`MANY`] (then `len` is 0).
    many: Option<BTreeMap<String, String>>,
}

/// Labels kept in the sorted list; past this many a line's labels go into a map.
const MANY: usize = 64;

impl Extracted {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the labels, keeping their buffers.
    pub fn clear(&mut self) {
        self.len = 0;
        self.many = None;
    }

    pub fn len(&self) -> usize {
        self.len + self.many.as_ref().map_or(0, BTreeMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `name` is, or where it would go. A line has a handful of labels: a linear scan
    /// with [`crate::logql::short_eq::short_eq`] finds them fastest.
    fn position(&self, name: &str) -> Result<usize, usize> {
        match self.find(name) {
            Some(i) => Ok(i),
            None if self.len == 0 => Err(0),
            None => Err(self.slots[..self.len].partition_point(|(n, _)| n.as_str() < name)),
        }
    }

    /// Where `name` is, if it is set.
    fn find(&self, name: &str) -> Option<usize> {
        self.slots[..self.len]
            .iter()
            .position(|(n, _)| crate::logql::short_eq::short_eq(n.as_bytes(), name.as_bytes()))
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        if let Some(many) = &self.many {
            return many.get(name);
        }
        self.find(name).map(|i| &self.slots[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name`, its value written by `write` into a reused buffer.
    pub fn set_with(&mut self, name: &str, write: impl FnOnce(&mut String)) {
        if self.many.is_none() && self.len >= MANY && self.find(name).is_none() {
            let moved = self.slots[..self.len]
                .iter_mut()
                .map(|(n, v)| (std::mem::take(n), std::mem::take(v)));
            self.many = Some(moved.collect());
            self.len = 0;
        }
        if let Some(many) = &mut self.many {
            let value = many.entry(name.to_string()).or_default();
            value.clear();
            write(value);
            return;
        }
        let i = match self.position(name) {
            Ok(i) => i,
            // The first label of a line, in the slot that held it last time (the usual case
            // under a `sum by (level)`): no move.
            Err(0)
                if self.len == 0
                    && self.slots.first().is_some_and(|(n, _)| {
                        crate::logql::short_eq::short_eq(n.as_bytes(), name.as_bytes())
                    }) =>
            {
                self.len = 1;
                0
            }
            Err(i) => {
                if self.len == self.slots.len() {
                    self.slots.push((String::new(), String::new()));
                }
                // The spare slot at `len` moves to its sorted place.
                self.slots[i..=self.len].rotate_right(1);
                self.len += 1;
                let slot = &mut self.slots[i].0;
                slot.clear();
                slot.push_str(name);
                i
            }
        };
        let value = &mut self.slots[i].1;
        value.clear();
        write(value);
    }

    /// Sets `name` to `value`.
    pub fn insert(&mut self, name: String, value: String) {
        self.set_with(&name, |v| v.push_str(&value));
    }

    /// Sets `name` to `value` unless it is set already.
    pub fn insert_if_absent(&mut self, name: &str, value: &str) {
        if !self.contains_key(name) {
            self.set_with(name, |v| v.push_str(value));
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(many) = &mut self.many {
            many.remove(name);
            return;
        }
        if let Some(i) = self.find(name) {
            // The removed slot becomes the first spare one.
            self.slots[i..self.len].rotate_left(1);
            self.len -= 1;
        }
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.slots[..self.len]
            .iter()
            .map(|(n, v)| (n, v))
            .chain(self.many.iter().flatten())
    }

    /// The labels as a map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    }
}

impl PartialEq for Extracted {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl FromIterator<(String, String)> for Extracted {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut out = Extracted::new();
        for (n, v) in pairs {
            out.insert(n, v);
        }
        out
    }
}

impl IntoIterator for Extracted {
    type Item = (String, String);
    type IntoIter = std::iter::Chain<
        std::iter::Take<std::vec::IntoIter<(String, String)>>,
        std::collections::btree_map::IntoIter<String, String>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        let len = self.len;
        self.slots
            .into_iter()
            .take(len)
            .chain(self.many.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sorted_map_with_reused_buffers() {
        let mut e = Extracted::new();
        e.set_with("b", |v| v.push_str("22"));
        e.set_with("a", |v| v.push_str("11"));
        e.set_with("c", |v| v.push_str("33"));
        e.set_with("b", |v| v.push_str("two"));
        let names: Vec<_> = e.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(names, ["a=11", "b=two", "c=33"]);
        e.remove("a");
        assert_eq!(e.get("a"), None);
        assert_eq!(e.get("c").map(String::as_str), Some("33"));
        e.clear();
        assert!(e.is_empty());
        e.insert_if_absent("z", "26");
        e.insert_if_absent("z", "x");
        assert_eq!(
            e.to_map(),
            BTreeMap::from([("z".to_string(), "26".to_string())])
        );
        assert_eq!(e.clone().into_iter().count(), 1);
    }

    /// Past `MANY` labels the map takes over: the same answers, in the same order.
    #[test]
    fn many_labels_behave_as_few() {
        let mut e = Extracted::new();
        let mut map = BTreeMap::new();
        for i in (0..1000).rev() {
            let (n, v) = (format!("k{i:04}"), i.to_string());
            e.insert_if_absent(&n, &v);
            e.insert_if_absent(&n, "again");
            map.insert(n, v);
        }
        e.remove("k0500");
        map.remove("k0500");
        assert_eq!(e.len(), 999);
        assert_eq!(e.get("k0007").map(String::as_str), Some("7"));
        assert_eq!(e.to_map(), map);
        assert!(e.iter().map(|(n, _)| n).eq(map.keys()));
        assert!(e.clone().into_iter().eq(map.clone().into_iter()));
        e.clear();
        assert!(e.is_empty() && e.get("k0007").is_none());
    }
}
