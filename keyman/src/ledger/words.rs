//! The project's own list of 256 words used to read a hash aloud.
//!
//! At the end of a ceremony someone reads the ledger's head fingerprint aloud and the others compare it
//! with their screens and write it on the paper form. Hex digits are easy to mishear and tedious to
//! compare; eight plain English nouns are not. The list below is Postissue's own: 256 common, concrete
//! English words, lower case, 3 to 10 letters, sorted, with no duplicates, no homophones and no pair that
//! differs only by its first sound (so "pocket" and "rocket" are not both in it). Byte value `b` maps to
//! `WORDS[b]`. The list is part of the ledger format: changing it changes every printed fingerprint, so it
//! must never be edited, only replaced by a new, versioned list.

/// Number of leading bytes of a hash shown as words: 8 words cover 64 bits.
///
/// Finding another ledger whose head hash starts with the same 64 bits takes about 2^64 SHA-256
/// computations, far beyond what a ceremony's participants have to fear; the full hash is shown in hex
/// beside the words for anyone who wants all 256 bits.
pub const FINGERPRINT_WORDS: usize = 8;

/// The word list: entry `b` is the word for byte value `b`.
pub const WORDS: [&str; 256] = [
    "acorn",
    "actor",
    "adult",
    "agent",
    "airport",
    "alarm",
    "album",
    "amber",
    "anchor",
    "ankle",
    "antelope",
    "apple",
    "apron",
    "arrow",
    "atlas",
    "attic",
    "autumn",
    "avenue",
    "badge",
    "bagel",
    "baker",
    "bamboo",
    "banjo",
    "barrel",
    "basket",
    "beach",
    "beaver",
    "bench",
    "berry",
    "bicycle",
    "blanket",
    "blossom",
    "border",
    "bottle",
    "bread",
    "brick",
    "bridge",
    "broom",
    "bucket",
    "button",
    "cabin",
    "cactus",
    "camera",
    "candle",
    "canoe",
    "canvas",
    "carpet",
    "carrot",
    "castle",
    "cathedral",
    "cellar",
    "cement",
    "chain",
    "chalk",
    "chess",
    "chimney",
    "cinnamon",
    "circle",
    "clock",
    "cloud",
    "clover",
    "cobra",
    "coconut",
    "comet",
    "compass",
    "copper",
    "cotton",
    "crayon",
    "cricket",
    "crown",
    "cupboard",
    "cushion",
    "daisy",
    "dancer",
    "desert",
    "diamond",
    "dinner",
    "doctor",
    "dolphin",
    "donkey",
    "dragon",
    "drawer",
    "dream",
    "drum",
    "eagle",
    "earth",
    "echo",
    "elbow",
    "engine",
    "eraser",
    "fabric",
    "falcon",
    "feather",
    "fence",
    "fiddle",
    "finger",
    "flag",
    "flame",
    "flower",
    "forest",
    "fossil",
    "fountain",
    "fox",
    "frog",
    "funnel",
    "garden",
    "garlic",
    "giant",
    "giraffe",
    "glacier",
    "glove",
    "goat",
    "gravel",
    "guitar",
    "hammer",
    "harbor",
    "harvest",
    "helmet",
    "hockey",
    "honey",
    "horse",
    "hotel",
    "island",
    "ivory",
    "jacket",
    "jelly",
    "jigsaw",
    "jungle",
    "kettle",
    "kitchen",
    "koala",
    "ladder",
    "lagoon",
    "lantern",
    "laptop",
    "lemon",
    "leopard",
    "library",
    "lighthouse",
    "lizard",
    "lobster",
    "lumber",
    "magnet",
    "mango",
    "maple",
    "marble",
    "meadow",
    "melon",
    "meteor",
    "mirror",
    "muffin",
    "mushroom",
    "napkin",
    "needle",
    "nephew",
    "notebook",
    "nugget",
    "oasis",
    "ocean",
    "olive",
    "onion",
    "orange",
    "orbit",
    "orchid",
    "oven",
    "owl",
    "oyster",
    "palace",
    "panda",
    "pasta",
    "peacock",
    "peanut",
    "pencil",
    "penguin",
    "pepper",
    "piano",
    "pickle",
    "pigeon",
    "pillow",
    "pilot",
    "planet",
    "pony",
    "potato",
    "pumpkin",
    "puzzle",
    "pyramid",
    "rabbit",
    "radio",
    "railway",
    "rainbow",
    "raven",
    "ribbon",
    "river",
    "robot",
    "rocket",
    "saddle",
    "salmon",
    "sandwich",
    "saucer",
    "scarf",
    "school",
    "scooter",
    "seagull",
    "shelf",
    "shepherd",
    "shovel",
    "silver",
    "skate",
    "sketch",
    "sledge",
    "snowman",
    "sofa",
    "spider",
    "spinach",
    "spoon",
    "squirrel",
    "stadium",
    "statue",
    "sugar",
    "summer",
    "sunset",
    "swan",
    "sweater",
    "table",
    "tailor",
    "teapot",
    "temple",
    "tennis",
    "thunder",
    "tiger",
    "timber",
    "toast",
    "tomato",
    "toolbox",
    "torch",
    "tortoise",
    "trumpet",
    "tulip",
    "turtle",
    "umbrella",
    "unicorn",
    "valley",
    "velvet",
    "village",
    "violin",
    "volcano",
    "wallet",
    "walnut",
    "walrus",
    "whale",
    "whistle",
    "winter",
    "wolf",
    "yogurt",
    "zebra",
    "zipper",
];

/// The first [`FINGERPRINT_WORDS`] bytes of `bytes`, each mapped to its word (fewer when `bytes` is
/// shorter).
pub(crate) fn words_for(bytes: &[u8]) -> Vec<&'static str> {
    bytes
        .iter()
        .take(FINGERPRINT_WORDS)
        .filter_map(|&b| WORDS.get(usize::from(b)).copied())
        .collect()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn words_are_256_distinct_plain_lowercase_words() {
        let set: HashSet<&str> = WORDS.iter().copied().collect();
        assert_eq!(set.len(), 256, "duplicate word in the list");
        for w in WORDS {
            assert!((3..=10).contains(&w.len()), "{w}");
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
        }
        assert!(
            WORDS.windows(2).all(|p| p[0] < p[1]),
            "list must stay sorted"
        );
    }

    #[test]
    fn no_word_is_a_prefix_of_another() {
        // A word cut short when read aloud must not be mistaken for another one.
        for a in WORDS {
            for b in WORDS {
                assert!(a == b || !b.starts_with(a), "{a} / {b}");
            }
        }
    }

    #[test]
    fn no_two_words_differ_only_in_their_leading_consonants() {
        // "pocket" and "rocket" sound alike across a room; the list keeps only one of each such pair.
        let rhyme = |w: &'static str| w.trim_start_matches(|c: char| !"aeiouy".contains(c));
        let set: HashSet<&str> = WORDS.iter().map(|w| rhyme(w)).collect();
        assert_eq!(set.len(), 256);
    }

    #[test]
    fn mapping_is_fixed() {
        // Pinned: changing the list changes every fingerprint ever written on paper.
        assert_eq!(WORDS[0], "acorn");
        assert_eq!(WORDS[0x7f], "jungle");
        assert_eq!(WORDS[0xff], "zipper");
        assert_eq!(
            words_for(&[0, 1, 2, 0xfe, 0xff, 9, 10, 11, 12, 13]),
            ["acorn", "actor", "adult", "zebra", "zipper", "ankle", "antelope", "apple"]
        );
    }
}
