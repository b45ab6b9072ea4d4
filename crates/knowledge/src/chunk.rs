//! Cutting a document's pieces into passages for search: each passage stays
//! under one heading path, holds whole blocks where they fit and whole
//! sentences where they do not, is at most `max_chars` long, and repeats up to
//! `overlap` characters from the end of the passage before it in the same
//! section, so that a sentence cut from its context still finds it.

use steward_store::NewChunk;

use crate::extract::Piece;

/// How heading paths are written: outermost first.
pub const HEADING_SEPARATOR: &str = " › ";

pub fn chunk(pieces: &[Piece], max_chars: usize, overlap: usize) -> Vec<NewChunk> {
    let mut chunks = Vec::new();
    let mut headings: Vec<(u8, String)> = Vec::new();
    let mut current = String::new();
    let heading = |headings: &[(u8, String)]| {
        headings
            .iter()
            .map(|(_, h)| h.as_str())
            .collect::<Vec<_>>()
            .join(HEADING_SEPARATOR)
    };
    // The overlap carried into `current`, so that a passage of overlap only is not kept.
    let mut carried = 0;
    for piece in pieces {
        match piece {
            Piece::Heading(level, title) => {
                flush(&mut chunks, &mut current, carried, &heading(&headings));
                carried = 0;
                headings.retain(|(l, _)| l < level);
                headings.push((*level, truncate(title, 200)));
            }
            Piece::Block(text) => {
                for (n, unit) in units(text, max_chars).into_iter().enumerate() {
                    let needed = if current.is_empty() {
                        unit.chars().count()
                    } else {
                        current.chars().count() + 1 + unit.chars().count()
                    };
                    if needed > max_chars && !current.is_empty() {
                        let tail = tail(&current, overlap);
                        flush(&mut chunks, &mut current, carried, &heading(&headings));
                        // Room for the unit is kept: overlap gives way to content.
                        if !tail.is_empty()
                            && tail.chars().count() + 1 + unit.chars().count() <= max_chars
                        {
                            carried = tail.chars().count();
                            current = tail;
                        } else {
                            carried = 0;
                        }
                    }
                    if !current.is_empty() {
                        // Blocks on their own lines; sentences of one block, and
                        // the overlap before new text, run on.
                        let after_overlap = carried == current.chars().count();
                        current.push(if n == 0 && !after_overlap { '\n' } else { ' ' });
                    }
                    current.push_str(&unit);
                }
            }
        }
    }
    flush(&mut chunks, &mut current, carried, &heading(&headings));
    chunks
}

fn flush(chunks: &mut Vec<NewChunk>, current: &mut String, carried: usize, heading: &str) {
    let text = std::mem::take(current);
    if text.chars().count() > carried && !text.trim().is_empty() {
        chunks.push(NewChunk {
            heading: heading.to_owned(),
            text,
            embedding: None,
        });
    }
}

/// A block as pieces of at most `max` characters: whole if it fits, else its
/// sentences (the caller packs them), else its words, else its characters.
fn units(block: &str, max: usize) -> Vec<String> {
    if block.chars().count() <= max {
        return vec![block.to_owned()];
    }
    let mut out: Vec<String> = Vec::new();
    for sentence in sentences(block) {
        if sentence.chars().count() > max {
            out.extend(by_words(sentence, max));
        } else {
            out.push(sentence.to_owned());
        }
    }
    out
}

/// Sentences end at `.`, `!` or `?` followed by whitespace, or at a line break.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let next_is_space = chars.get(i + 1).is_some_and(|(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
            let end = at + c.len_utf8();
            let sentence = text[start..end].trim();
            if !sentence.is_empty() {
                out.push(sentence);
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn by_words(text: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        for piece in by_chars(word, max) {
            match out.last_mut() {
                Some(last) if last.chars().count() + 1 + piece.chars().count() <= max => {
                    last.push(' ');
                    last.push_str(&piece);
                }
                _ => out.push(piece),
            }
        }
    }
    out
}

fn by_chars(word: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    chars
        .chunks(max.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// The last `max` characters of `text`, starting at a sentence (or else a
/// word) boundary; empty when none falls within reach.
fn tail(text: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let count = text.chars().count();
    if count <= max {
        return String::new(); // the whole passage again would be all overlap
    }
    let start = text
        .char_indices()
        .nth(count - max)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let window = &text[start..];
    let sentence_start = window
        .char_indices()
        .find(|&(i, c)| i > 0 && window[..i].ends_with(['.', '!', '?', '\n']) && c.is_whitespace())
        .map(|(i, _)| i);
    let cut = sentence_start.or_else(|| window.find(char::is_whitespace));
    match cut {
        Some(i) => window[i..].trim().to_owned(),
        None => String::new(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Piece {
        Piece::Block(text.into())
    }

    #[test]
    fn blocks_share_a_passage_while_they_fit_under_one_heading() {
        let pieces = [
            Piece::Heading(1, "Guide".into()),
            Piece::Heading(2, "Returns".into()),
            block("Returns are free."),
            block("Use the form."),
            Piece::Heading(2, "Refunds".into()),
            block("Refunds take five days."),
            Piece::Heading(1, "About".into()),
            block("We sell tea."),
        ];
        let chunks = chunk(&pieces, 200, 50);
        let got: Vec<(&str, &str)> = chunks
            .iter()
            .map(|c| (c.heading.as_str(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Guide › Returns", "Returns are free.\nUse the form."),
                ("Guide › Refunds", "Refunds take five days."),
                ("About", "We sell tea."),
            ]
        );
    }

    #[test]
    fn long_blocks_are_cut_at_sentences_with_overlap_and_never_exceed_the_limit() {
        let sentences: Vec<String> = (0..40)
            .map(|i| format!("Sentence number {i} says something useful."))
            .collect();
        let text = sentences.join(" ");
        let chunks = chunk(&[block(&text)], 300, 80);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.text.chars().count() <= 300, "{}", c.text.len());
            assert!(
                c.text.starts_with("Sentence"),
                "cut at a sentence: {:?}",
                c.text
            );
            assert!(c.text.ends_with('.'));
        }
        for pair in chunks.windows(2) {
            let last_sentence = pair[0].text.rsplit(". ").next().unwrap();
            assert!(
                pair[1].text.contains(last_sentence.trim_end_matches('.')),
                "overlap carries the end of the passage before"
            );
        }
        // Every sentence is somewhere.
        for s in &sentences {
            assert!(chunks.iter().any(|c| c.text.contains(s.as_str())), "{s}");
        }
    }

    #[test]
    fn text_without_sentences_or_spaces_is_still_bounded() {
        let chunks = chunk(&[block(&"x".repeat(1000))], 200, 50);
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 200));
        let words = chunk(&[block(&"word ".repeat(500))], 200, 50);
        assert!(words.iter().all(|c| c.text.chars().count() <= 200));
        let multibyte = chunk(&[block(&"é".repeat(450))], 200, 0);
        assert_eq!(
            multibyte
                .iter()
                .map(|c| c.text.chars().count())
                .sum::<usize>(),
            450
        );
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        assert!(chunk(&[], 200, 50).is_empty());
        assert!(chunk(&[Piece::Heading(1, "Only a heading".into())], 200, 50).is_empty());
    }
}
