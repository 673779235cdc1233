//! Plain-text tables that fit the terminal: when the columns are too wide together, the widest
//! ones are cut (ending in `…`) until the table fits.

/// The narrowest a cut column becomes.
const NARROWEST: usize = 6;
const GAP: &str = "  ";

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table in at most `width` columns of text (when it can be cut that far).
    pub fn render(&self, width: usize) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|header| length(header)).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(length(first_line(cell)));
            }
        }
        let total = |widths: &[usize]| widths.iter().sum::<usize>() + GAP.len() * (columns - 1);
        while total(&widths) > width {
            let Some((widest, &current)) = widths.iter().enumerate().max_by_key(|(_, w)| **w)
            else {
                break;
            };
            if current <= NARROWEST {
                break;
            }
            widths[widest] = current - 1;
        }
        let mut text = String::new();
        let mut line = |cells: &[String]| {
            let mut out = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = cells.get(index).map(String::as_str).unwrap_or_default();
                let cell = cut(first_line(cell), *width);
                out.push_str(&cell);
                if index + 1 < columns {
                    out.push_str(&" ".repeat(width - length(&cell)));
                    out.push_str(GAP);
                }
            }
            text.push_str(out.trim_end());
            text.push('\n');
        };
        // A table of label and value pairs has no headers to show.
        if self.headers.iter().any(|header| !header.is_empty()) {
            line(&self.headers);
        }
        for row in &self.rows {
            line(row);
        }
        text
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn length(text: &str) -> usize {
    text.chars().count()
}

fn cut(text: &str, width: usize) -> String {
    if length(text) <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_fits_the_width_by_cutting_the_widest_column() {
        let mut table = Table::new(&["ID", "CONTENT"]);
        table.row(vec!["1".into(), "x".repeat(100)]);
        let text = table.render(40);
        for line in text.lines() {
            assert!(line.chars().count() <= 40, "{line}");
        }
        assert!(text.contains('…'));
        let wide = table.render(200);
        assert!(wide.contains(&"x".repeat(100)));
    }
}
