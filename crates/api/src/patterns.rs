//! k-anonymity for insights by category: which cells of a period may be
//! shown.
//!
//! A period's cells are its total, its first-level categories and their
//! second-level ones, each counting interactions and distinct people. A cell
//! counting fewer than `k` people is suppressed. The numbers shown obey
//! known sums (the total is the sum of the first-level cells, each of those
//! the sum of its second-level ones, and the total is known elsewhere too:
//! the period's replies), so a suppressed cell could be worked out from the
//! cells shown: every suppressed cell is then checked against the whole
//! system of sums, both levels at once, and while any is determined (or
//! pinned down by every cell counting at least one interaction), the
//! smallest cell shown beside it in one of its sums is suppressed too. Both
//! levels are decided together, so the answer at level 1 and the answer at
//! level 2 cannot be combined to undo each other.

/// One cell of a period: `l2` empty for a first-level category.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub l1: String,
    pub l2: String,
    pub interactions: i64,
    pub people: i64,
    pub suppressed: bool,
}

/// A sum the numbers obey: `whole` = Σ `parts` (indexes into the cells;
/// `None` is the period's total, which is always known).
struct Sum {
    whole: Option<usize>,
    parts: Vec<usize>,
}

/// Decides which of a period's cells are suppressed (their `suppressed`
/// set). `total_people` and `total` are the period's. Returns false when the
/// whole period must be suppressed.
pub fn suppress(cells: &mut [Cell], total: i64, total_people: i64, k: i64) -> bool {
    if total_people < k {
        cells.iter_mut().for_each(|c| c.suppressed = true);
        return false;
    }
    for cell in cells.iter_mut() {
        cell.suppressed = cell.people < k;
    }
    let sums = sums_of(cells);
    // Each round suppresses one more cell, so this ends.
    while let Some(exposed) = exposed(cells, &sums, total) {
        // Cells shown beside a suppressed one in some sum, smallest first:
        // the first whose suppression hides `exposed`, else the smallest.
        let mut candidates: Vec<usize> = sums
            .iter()
            .filter(|s| {
                s.whole.is_some_and(|w| cells[w].suppressed)
                    || s.parts.iter().any(|&p| cells[p].suppressed)
            })
            .flat_map(|s| s.whole.into_iter().chain(s.parts.iter().copied()))
            .filter(|&i| !cells[i].suppressed)
            .collect();
        candidates.sort_by_key(|&i| {
            (
                cells[i].interactions,
                cells[i].l1.clone(),
                cells[i].l2.clone(),
            )
        });
        candidates.dedup();
        let hides = |i: usize, cells: &mut [Cell]| {
            cells[i].suppressed = true;
            let still = exposed_cells(cells, &sums, total).contains(&exposed);
            cells[i].suppressed = false;
            !still
        };
        let chosen = candidates
            .iter()
            .copied()
            .find(|&i| hides(i, cells))
            .or_else(|| candidates.first().copied());
        match chosen {
            Some(i) => cells[i].suppressed = true,
            None => {
                cells.iter_mut().for_each(|c| c.suppressed = true);
                return false;
            }
        }
    }
    true
}

fn sums_of(cells: &[Cell]) -> Vec<Sum> {
    let first_level: Vec<usize> = (0..cells.len())
        .filter(|&i| cells[i].l2.is_empty())
        .collect();
    let mut sums = vec![Sum {
        whole: None,
        parts: first_level.clone(),
    }];
    for &parent in &first_level {
        let parts: Vec<usize> = (0..cells.len())
            .filter(|&i| !cells[i].l2.is_empty() && cells[i].l1 == cells[parent].l1)
            .collect();
        if !parts.is_empty() {
            sums.push(Sum {
                whole: Some(parent),
                parts,
            });
        }
    }
    sums
}

/// A suppressed cell whose value the shown cells give away, if any.
fn exposed(cells: &[Cell], sums: &[Sum], total: i64) -> Option<usize> {
    exposed_cells(cells, sums, total).first().copied()
}

/// Every suppressed cell whose value the shown cells give away.
fn exposed_cells(cells: &[Cell], sums: &[Sum], total: i64) -> Vec<usize> {
    let unknown: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].suppressed).collect();
    if unknown.is_empty() {
        return Vec::new();
    }
    let column = |cell: usize| unknown.iter().position(|&u| u == cell);
    // Every suppressed cell counts at least one interaction: a sum whose
    // known rest leaves exactly one per unknown part pins each to one.
    for sum in sums {
        let whole = match sum.whole {
            None => total,
            Some(i) if !cells[i].suppressed => cells[i].interactions,
            Some(_) => continue,
        };
        let known: i64 = sum
            .parts
            .iter()
            .filter(|&&i| !cells[i].suppressed)
            .map(|&i| cells[i].interactions)
            .sum();
        let hidden: Vec<usize> = sum
            .parts
            .iter()
            .copied()
            .filter(|&i| cells[i].suppressed)
            .collect();
        if !hidden.is_empty() && whole - known == hidden.len() as i64 {
            return hidden;
        }
    }
    // The sums as equations over the suppressed cells, in reduced row
    // echelon form: a cell is determined when its pivot row names it alone.
    let width = unknown.len();
    let mut rows: Vec<Vec<f64>> = sums
        .iter()
        .map(|sum| {
            let mut row = vec![0.0; width];
            if let Some(c) = sum.whole.and_then(column) {
                row[c] += 1.0;
            }
            for &part in &sum.parts {
                if let Some(c) = column(part) {
                    row[c] -= 1.0;
                }
            }
            row
        })
        .collect();
    let mut pivot_row = 0;
    let mut pivots = Vec::new();
    for col in 0..width {
        let Some(best) = (pivot_row..rows.len())
            .max_by(|&a, &b| rows[a][col].abs().total_cmp(&rows[b][col].abs()))
            .filter(|&r| rows[r][col].abs() > 1e-9)
        else {
            continue;
        };
        rows.swap(pivot_row, best);
        let lead = rows[pivot_row][col];
        rows[pivot_row].iter_mut().for_each(|v| *v /= lead);
        for r in 0..rows.len() {
            if r != pivot_row && rows[r][col].abs() > 1e-9 {
                let factor = rows[r][col];
                let pivot = rows[pivot_row].clone();
                for (v, p) in rows[r].iter_mut().zip(pivot) {
                    *v -= factor * p;
                }
            }
        }
        pivots.push((pivot_row, col));
        pivot_row += 1;
        if pivot_row == rows.len() {
            break;
        }
    }
    pivots
        .into_iter()
        .filter(|&(r, col)| (0..width).all(|c| c == col || rows[r][c].abs() <= 1e-9))
        .map(|(_, col)| unknown[col])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(l1: &str, l2: &str, interactions: i64, people: i64) -> Cell {
        Cell {
            l1: l1.into(),
            l2: l2.into(),
            interactions,
            people,
            suppressed: false,
        }
    }

    fn shown(cells: &[Cell]) -> Vec<(&str, &str)> {
        cells
            .iter()
            .filter(|c| !c.suppressed)
            .map(|c| (c.l1.as_str(), c.l2.as_str()))
            .collect()
    }

    #[test]
    fn a_small_cell_takes_the_smallest_neighbour_with_it() {
        // HR: 4 people; IT: 40; Finance: 30 (two subcategories).
        let mut cells = vec![
            cell("HR", "", 6, 4),
            cell("HR", "Leave", 6, 4),
            cell("IT", "", 80, 40),
            cell("IT", "Access", 80, 40),
            cell("Finance", "", 50, 30),
            cell("Finance", "Expenses", 30, 20),
            cell("Finance", "Invoices", 20, 12),
        ];
        assert!(suppress(&mut cells, 136, 70, 5));
        let visible = shown(&cells);
        assert!(!visible.contains(&("HR", "")) && !visible.contains(&("HR", "Leave")));
        // HR = total - IT - Finance: one of those goes, and then one of its
        // own subcategories, or its value would follow from them.
        assert!(visible.len() <= 3, "{visible:?}");
        assert!(!visible.contains(&("Finance", "")), "{visible:?}");
        assert!(visible.contains(&("IT", "")), "{visible:?}");
    }

    #[test]
    fn two_categories_one_small_leaves_only_the_total() {
        let mut cells = vec![
            cell("A", "", 9, 4),
            cell("A", "a", 9, 4),
            cell("B", "", 100, 40),
            cell("B", "b", 100, 40),
        ];
        assert!(suppress(&mut cells, 109, 44, 5));
        assert!(shown(&cells).is_empty(), "{cells:?}");
    }

    #[test]
    fn cells_of_one_interaction_each_are_not_pinned_by_the_rest() {
        // Two small cells of one interaction each: total - shown = 2 = two
        // unknown cells of at least one each, so each would be known.
        let mut cells = vec![
            cell("A", "", 1, 1),
            cell("B", "", 1, 1),
            cell("C", "", 50, 20),
            cell("D", "", 40, 20),
        ];
        assert!(suppress(&mut cells, 92, 42, 5));
        assert_eq!(shown(&cells), [("C", "")]);
    }

    #[test]
    fn a_period_with_too_few_people_is_suppressed_whole() {
        let mut cells = vec![cell("A", "", 9, 4)];
        assert!(!suppress(&mut cells, 9, 4, 5));
        assert!(cells[0].suppressed);
        let mut big = vec![cell("A", "", 90, 40), cell("A", "x", 90, 40)];
        assert!(suppress(&mut big, 90, 40, 5));
        assert_eq!(shown(&big).len(), 2);
    }
}
