//! [`Keyed`]: a slab whose keys carry a generation, so a key kept after its entry was
//! removed never reaches the entry that reuses the slot. Registrations, timers and tasks
//! are stored this way.

use slab::Slab;

/// A key into a [`Keyed`]: the slot and the generation it was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    index: u32,
    generation: u32,
}

/// Generations fit in 31 bits, so a key packs into a `usize` that is never `usize::MAX`
/// (the poller's own wake-up key).
const GENERATION_MASK: u32 = 0x7fff_ffff;

impl Key {
    /// The key as one number (index in the low 32 bits, generation above).
    pub(crate) fn to_usize(self) -> usize {
        ((self.generation as usize) << 32) | self.index as usize
    }

    /// The inverse of [`to_usize`](Key::to_usize).
    pub(crate) fn from_usize(n: usize) -> Key {
        Key {
            index: (n & 0xffff_ffff) as u32,
            generation: ((n >> 32) as u32) & GENERATION_MASK,
        }
    }
}

/// A slab of `T` addressed by generation-checked [`Key`]s.
pub(crate) struct Keyed<T> {
    slab: Slab<(u32, T)>,
    next_generation: u32,
}

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Keyed {
            slab: Slab::new(),
            next_generation: 0,
        }
    }
}

impl<T> Keyed<T> {
    /// Stores `value` under a new key.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        self.insert_with(|_| value)
    }

    /// Stores the value `make` builds from its own key.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(Key) -> T) -> Key {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1) & GENERATION_MASK;
        let entry = self.slab.vacant_entry();
        let index = u32::try_from(entry.key()).expect("fewer than 2^32 live entries");
        let key = Key { index, generation };
        entry.insert((generation, make(key)));
        key
    }

    /// The value under `key`, if it is still that one.
    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slab.get(key.index as usize) {
            Some((generation, value)) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The value under `key`, mutably, if it is still that one.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slab.get_mut(key.index as usize) {
            Some((generation, value)) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// Removes and returns the value under `key`, if it is still that one.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        self.get(key)?;
        Some(self.slab.remove(key.index as usize).1)
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether there are no live entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every live value.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slab.iter().map(|(_, (_, value))| value)
    }
}

#[cfg(test)]
mod tests {
    use super::{Key, Keyed};

    #[test]
    fn a_stale_key_never_reaches_the_entry_that_reuses_its_slot() {
        let mut k = Keyed::default();
        let a = k.insert("a");
        assert_eq!(k.remove(a), Some("a"));
        let b = k.insert("b");
        assert_eq!(k.get(a), None, "same slot, older generation");
        assert_eq!(k.remove(a), None);
        assert_eq!(k.get(b), Some(&"b"));
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn keys_pack_into_a_usize_that_is_never_the_notify_key() {
        let mut k = Keyed::<()> {
            next_generation: super::GENERATION_MASK,
            ..Keyed::default()
        };
        let key = k.insert(());
        assert_ne!(key.to_usize(), usize::MAX);
        assert_eq!(Key::from_usize(key.to_usize()), key);
        let next = k.insert(());
        assert_eq!(
            Key::from_usize(next.to_usize()),
            next,
            "generation wrapped to 0"
        );
    }
}
