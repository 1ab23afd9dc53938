//! Prompts of a chosen length in tokens.
//!
//! With a Hugging Face `tokenizer.json` (`--tokenizer FILE`, read from a
//! local file, nothing downloaded) every prompt has exactly the asked
//! number of tokens under it. The builder finds the tokenizer's own
//! whole-word tokens (a word that, after a space, is one token) and checks
//! that words joined by spaces add up one token each, which holds for the
//! whitespace-splitting pre-tokenizers of BPE (`Ġword`) and SentencePiece
//! (`▁word`) vocabularies; a prompt of N tokens is then N such words, with
//! no encoding on the load path. Where that check fails the builder
//! encodes each prompt and trims or extends it until it is exact.
//!
//! Without a tokenizer, prompts come from a list of common English words
//! that common BPE tokenizers keep as one token each: the lengths are then
//! approximate, and the run says so.
//!
//! Prompts differ from their first word on (drawn per request from a
//! seeded stream), so no two requests share a prefix by accident; shared
//! prefixes are asked for explicitly ([`PromptBuilder::words`] with the
//! same stream).

use std::path::{Path, PathBuf};

use stats::SplitMix64;
use tokenizers::Tokenizer;

/// Common English words, one token each (after a space) in the GPT-2,
/// Llama and cl100k vocabularies: the vocabulary of prompts when no
/// tokenizer is given.
const COMMON_WORDS: &str = "the of and to in is it you that he was for on are with as his they be at one have this from or had by word but what some we can out other were all there when up use your how said an each she which do their time if will way about many then them write would like so these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first who may down side been now find any new work part take get place made live where after back little only round man year came show every good me give our under name very through just form sentence great think say help low line differ turn cause much mean before move right boy old too same tell does set three want air well also play small end put home read hand port large spell add even land here must big high such follow act why ask men change went light kind off need house picture try us again animal point mother world near build self earth father";

/// How many whole-word tokens a tokenizer must have for prompts drawn
/// from them to be unique and varied.
const MIN_WORDS: usize = 64;

/// Why a tokenizer cannot be used; said before any request.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file is missing or is not a `tokenizer.json`.
    #[error("--tokenizer {path}: {why}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// How words are joined into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// `w1 w2 w3`.
    Spaces,
    /// ` w1 w2 w3`: a tokenizer that tells a word after a space from one at
    /// the start (most BPE vocabularies) counts every word the same way.
    LeadingSpace,
}

/// Makes prompt text of a chosen token length.
pub(crate) struct PromptBuilder {
    words: Vec<String>,
    join: Join,
    /// Present when lengths are exact under it.
    tokenizer: Option<Tokenizer>,
    /// The words add up one token each: no encoding per prompt.
    additive: bool,
    source: String,
}

impl std::fmt::Debug for PromptBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptBuilder")
            .field("words", &self.words.len())
            .field("join", &self.join)
            .field("additive", &self.additive)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl PromptBuilder {
    /// Prompts of approximate length: common English words, one token
    /// each in common BPE vocabularies.
    pub(crate) fn approximate() -> Self {
        Self {
            words: COMMON_WORDS.split_whitespace().map(str::to_owned).collect(),
            join: Join::LeadingSpace,
            tokenizer: None,
            additive: true,
            source: "common English words (no --tokenizer: lengths approximate)".to_owned(),
        }
    }

    /// Prompts of exact length under the tokenizer in `path` (a Hugging
    /// Face `tokenizer.json`).
    pub(crate) fn from_tokenizer_file(path: &Path) -> Result<Self, PromptError> {
        let bad = |why: String| PromptError::Tokenizer {
            path: path.to_owned(),
            why,
        };
        if !path.is_file() {
            return Err(bad(
                "no such file; give a local Hugging Face tokenizer.json (nothing is downloaded)"
                    .to_owned(),
            ));
        }
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| bad(format!("not a Hugging Face tokenizer.json: {e}")))?;
        Self::from_tokenizer(tokenizer, &path.display().to_string()).map_err(bad)
    }

    fn from_tokenizer(tokenizer: Tokenizer, name: &str) -> Result<Self, String> {
        let count =
            |text: &str| -> Option<usize> { tokenizer.encode(text, false).ok().map(|e| e.len()) };
        // Whole-word tokens: a token that decodes to letters alone (after
        // an optional space) and that, after a space, encodes back to one
        // token. Sorted by id, so the same file gives the same words.
        let mut vocab: Vec<(String, u32)> = tokenizer.get_vocab(false).into_iter().collect();
        vocab.sort_by_key(|(_, id)| *id);
        let mut words = Vec::new();
        for (_, id) in vocab {
            let Ok(text) = tokenizer.decode(&[id], false) else {
                continue;
            };
            let word = text.trim_start();
            let plain =
                (2..=12).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase());
            if plain && count(&format!(" {word}")) == Some(1) && !words.contains(&word.to_owned()) {
                words.push(word.to_owned());
            }
        }
        if words.len() < MIN_WORDS {
            return Err(format!(
                "has only {} whole-word tokens of lowercase letters; prompts need at least {MIN_WORDS} to be varied",
                words.len()
            ));
        }
        // Do words joined by spaces add up one token each? Try both joins
        // on seeded random sequences of every length up to 64.
        let mut rng = SplitMix64::new(0x70_6b_7a);
        let additive = |join: Join, rng: &mut SplitMix64| {
            (1..=64).all(|n| {
                let text = join_words(
                    (0..n).map(|_| words[rng.index_below(words.len())].as_str()),
                    join,
                );
                count(&text) == Some(n)
            })
        };
        let join = [Join::LeadingSpace, Join::Spaces]
            .into_iter()
            .find(|&j| additive(j, &mut rng));
        Ok(Self {
            additive: join.is_some(),
            join: join.unwrap_or(Join::LeadingSpace),
            words,
            tokenizer: Some(tokenizer),
            source: format!("{name} (exact lengths)"),
        })
    }

    /// Whether prompt lengths are exact (a tokenizer was given).
    pub(crate) fn exact(&self) -> bool {
        self.tokenizer.is_some()
    }

    /// Where the words come from, for the start line.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// `n` words drawn from `rng`, as text: `n` tokens when the words are
    /// additive (see [`PromptBuilder::text`] for the exact guarantee).
    pub(crate) fn words(&self, n: u32, rng: &mut SplitMix64) -> String {
        join_words(
            (0..n).map(|_| self.words[rng.index_below(self.words.len())].as_str()),
            self.join,
        )
    }

    /// Text of exactly `n` tokens under the tokenizer (approximately `n`
    /// without one), its words drawn from `rng`. `after`: the text it will
    /// follow (a shared prefix), whose tokens are not counted in `n`.
    pub(crate) fn text(&self, n: u32, after: &str, rng: &mut SplitMix64) -> String {
        let mut text = self.words(n, rng);
        let (Some(tokenizer), false) = (&self.tokenizer, self.additive && after.is_empty()) else {
            return text;
        };
        // Encode and fix. The words' count of tokens grows with their
        // number, though not one a word (a merge may span two words): draw
        // enough words, find by bisection the fewest whose text reaches the
        // target, and if the last of them overshoots, try others in its
        // place. A few encodings of the whole text, not one per word.
        let count = |t: &str| tokenizer.encode(t, false).map(|e| e.len()).unwrap_or(0);
        let base = if after.is_empty() { 0 } else { count(after) };
        let target = base + n as usize;
        let draw = |rng: &mut SplitMix64| self.words[rng.index_below(self.words.len())].as_str();
        let mut words: Vec<&str> = (0..n).map(|_| draw(rng)).collect();
        let total = |words: &[&str]| {
            count(&format!(
                "{after}{}",
                join_words(words.iter().copied(), self.join)
            ))
        };
        while total(&words) < target && words.len() < 16 * n as usize + 64 {
            let more = words.len().max(8);
            words.extend((0..more).map(|_| draw(rng)));
        }
        // The fewest words whose text reaches the target.
        let (mut lo, mut hi) = (0, words.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if total(&words[..mid]) >= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        // The last of them overshot (or hit): take it back, then add words
        // one at a time, each the first of a few draws that lands on the
        // target, else the one that comes closest without passing it;
        // when every draw passes it, take one more word back.
        words.truncate(lo);
        let mut current = total(&words);
        for _ in 0..64 {
            if current == target {
                break;
            }
            if current > target {
                words.pop();
                current = total(&words);
                continue;
            }
            let mut best: Option<(&str, usize)> = None;
            for _ in 0..16 {
                let word = draw(rng);
                words.push(word);
                let c = total(&words);
                words.pop();
                if c <= target && best.is_none_or(|(_, b)| c > b) {
                    best = Some((word, c));
                }
                if c == target {
                    break;
                }
            }
            match best {
                Some((word, c)) if c > current => {
                    words.push(word);
                    current = c;
                }
                _ => {
                    if words.pop().is_none() {
                        break;
                    }
                    current = total(&words);
                }
            }
        }
        text = join_words(words.iter().copied(), self.join);
        text
    }

    /// Appends text of exactly `n` tokens under the tokenizer
    /// (approximately `n` without one) to `prompt`, which this builder
    /// made or which is empty, its words drawn from `rng`. With additive
    /// words that is `n` more words and no encoding, so a prompt built
    /// piece by piece (a shared prefix, hash blocks, its own rest) counts
    /// the sum of its pieces; otherwise the whole is encoded and fixed.
    pub(crate) fn extend(&self, prompt: &mut String, n: u32, rng: &mut SplitMix64) {
        if n == 0 {
            return;
        }
        if self.additive {
            for _ in 0..n {
                if !prompt.is_empty() || self.join == Join::LeadingSpace {
                    prompt.push(' ');
                }
                prompt.push_str(&self.words[rng.index_below(self.words.len())]);
            }
            return;
        }
        // Not additive: the join is a leading space, so the rest follows
        // the prompt as words.
        let rest = self.text(n, prompt, rng);
        prompt.push_str(&rest);
    }

    /// Tokens of `text` under the tokenizer, when there is one.
    #[cfg(test)]
    pub(crate) fn count(&self, text: &str) -> Option<usize> {
        self.tokenizer
            .as_ref()
            .and_then(|t| t.encode(text, false).ok())
            .map(|e| e.len())
    }
}

fn join_words<'a>(words: impl Iterator<Item = &'a str>, join: Join) -> String {
    let mut text = String::new();
    for (i, word) in words.enumerate() {
        if i > 0 || join == Join::LeadingSpace {
            text.push(' ');
        }
        text.push_str(word);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer built in code: every common word is one token
    /// after a space, as in a BPE vocabulary with a whitespace split.
    fn word_level() -> Tokenizer {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
        let mut vocab: std::collections::HashMap<String, u32> = COMMON_WORDS
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| (w.to_owned(), i as u32 + 1))
            .collect();
        vocab.insert("[UNK]".into(), 0);
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
        tokenizer
    }

    #[test]
    fn exact_lengths_under_an_additive_tokenizer() {
        let builder = PromptBuilder::from_tokenizer(word_level(), "word-level").unwrap();
        assert!(builder.exact() && builder.additive);
        let mut rng = SplitMix64::new(3);
        for n in [1, 2, 7, 100, 1000] {
            let text = builder.text(n, "", &mut rng);
            assert_eq!(builder.count(&text), Some(n as usize), "{n}");
        }
        // After a shared prefix, the rest counts exactly n more.
        let prefix = builder.text(32, "", &mut rng);
        let rest = builder.text(50, &prefix, &mut rng);
        assert_eq!(builder.count(&format!("{prefix}{rest}")), Some(82));
        // Built piece by piece, a prompt counts the sum of its pieces.
        let mut prompt = String::new();
        for n in [16, 16, 5, 40] {
            builder.extend(&mut prompt, n, &mut rng);
        }
        assert_eq!(builder.count(&prompt), Some(77));
    }

    #[test]
    fn prompts_differ_from_the_first_word_and_repeat_with_the_seed() {
        let builder = PromptBuilder::approximate();
        let a = builder.text(20, "", &mut SplitMix64::new(1));
        let b = builder.text(20, "", &mut SplitMix64::new(2));
        let a2 = builder.text(20, "", &mut SplitMix64::new(1));
        assert_eq!(a, a2);
        assert_ne!(a.split(' ').nth(1), b.split(' ').nth(1));
        assert_eq!(a.split_whitespace().count(), 20);
        assert!(!builder.exact());
        assert!(builder.source().contains("lengths approximate"));
    }

    #[test]
    fn a_missing_or_bad_file_is_a_clear_error() {
        let err = PromptBuilder::from_tokenizer_file(Path::new("/nonexistent/tokenizer.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such file") && err.contains("nothing is downloaded"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("loadgen-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("tokenizer.json");
        std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
        let err = PromptBuilder::from_tokenizer_file(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Hugging Face tokenizer.json"), "{err}");
    }
}
