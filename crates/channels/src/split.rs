//! Replies longer than a channel takes in one message are split, at the last
//! paragraph or sentence boundary that fits, else at a space, else anywhere.

/// Parts of `text` of at most `limit` characters each. Joined back with the
/// whitespace cut at each split, they are `text` again.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    assert!(limit > 0, "a channel takes at least one character");
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > limit {
        // Byte offset just past the `limit`-th character.
        let window_end = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..window_end];
        let cut = best_cut(window).unwrap_or(window_end);
        let (part, tail) = rest.split_at(cut);
        parts.push(part.trim_end().to_owned());
        rest = tail.trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// Where to end a part inside `window`: after a paragraph break, then after a
/// sentence's end, then at a space, preferring the latest of each kind. Never
/// at the very start, so every part has content.
fn best_cut(window: &str) -> Option<usize> {
    let after = |pattern: &str| {
        window
            .rmatch_indices(pattern)
            .map(|(i, m)| i + m.len())
            .find(|&i| window[..i].trim().chars().count() > 0)
    };
    after("\n\n")
        .or_else(|| {
            [". ", "! ", "? ", ".\n", "!\n", "?\n", "。", "؟ "]
                .iter()
                .filter_map(|p| after(p))
                .max()
        })
        .or_else(|| after("\n"))
        .or_else(|| after(" "))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn splits_at_sentences() {
        let text = "First sentence here. Second one follows! Third? Yes.";
        assert_eq!(
            split(text, 25),
            vec!["First sentence here.", "Second one follows!", "Third? Yes."]
        );
        assert_eq!(split("short", 10), vec!["short"]);
        assert_eq!(split("", 10), vec![""]);
        assert_eq!(split("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn counts_characters_not_bytes() {
        let text = "مرحبا بك. 👋👋👋 שלום עולם.";
        for part in split(text, 10) {
            assert!(part.chars().count() <= 10, "{part}");
        }
    }

    proptest! {
        #[test]
        fn parts_fit_and_lose_nothing(text in "[a-zA-Z .!?\n😀ש]{0,300}", limit in 1usize..50) {
            let parts = split(&text, limit);
            for part in &parts {
                prop_assert!(part.chars().count() <= limit);
            }
            let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            prop_assert_eq!(squash(&parts.concat()), squash(&text));
        }
    }
}
