//! Splitting a multi-document YAML file into its documents, each with the line it starts
//! on, so that an error inside the third document still names the file's real line.

/// One YAML document of a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Document<'a> {
    pub text: &'a str,
    /// Lines of the file before this document's first line; add it to a line reported
    /// by the parser (1-based within the document) to get the line in the file.
    pub line_offset: u64,
}

impl Document<'_> {
    /// The file line of the document's first line that is neither blank nor a comment:
    /// where an error about the document as a whole points.
    pub(super) fn first_content_line(&self) -> u64 {
        let index = self
            .text
            .lines()
            .position(|l| !is_blank_or_comment(l))
            .unwrap_or(0);
        self.line_offset + index as u64 + 1
    }
}

/// The documents of `text`, split on lines that are exactly `---`. Documents holding
/// only blanks and comments are left out: an empty document is no resource.
pub(crate) fn split(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 0u64;
    let mut pos = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let end = pos + line.len();
        if line.trim_end_matches(['\n', '\r']) == "---" {
            push(&mut docs, &text[start..pos], start_line);
            start = end;
            start_line = index as u64 + 1;
        }
        pos = end;
    }
    push(&mut docs, &text[start..], start_line);
    docs
}

fn push<'a>(docs: &mut Vec<Document<'a>>, text: &'a str, line_offset: u64) {
    if !text.lines().all(is_blank_or_comment) {
        docs.push(Document { text, line_offset });
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_keeps_line_offsets() {
        let text = "# header\n---\na: 1\nb: 2\n---\n\n# nothing\n---\nc: 3\n";
        let docs = split(text);
        assert_eq!(
            docs,
            vec![
                Document {
                    text: "a: 1\nb: 2\n",
                    line_offset: 2
                },
                Document {
                    text: "c: 3\n",
                    line_offset: 8
                },
            ]
        );
        assert_eq!(docs[1].first_content_line(), 9);
    }

    #[test]
    fn only_whole_lines_separate() {
        let docs = split("a: \"---\"\nb: ---x\n----\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(split("a: 1\r\n---\r\nb: 2").len(), 2);
        assert!(split("").is_empty());
    }
}
