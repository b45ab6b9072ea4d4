//! The patterns page: how many answered interactions fell under each
//! category of the organization's taxonomy, per week or month, as the API
//! gives them (a number that counts too few people, or would give one
//! away, is never shown), and the taxonomy itself. For owners, admins and
//! advisors, whose console opens here.

use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use serde::Deserialize;
use steward_domain::Taxonomy;

use super::session::Console;
use super::view::{self, Layout};

#[derive(Deserialize)]
pub struct PatternsParams {
    by: Option<String>,
    level: Option<String>,
}

#[derive(Deserialize)]
struct Insights {
    min_people: u32,
    periods: Vec<Period>,
}

#[derive(Deserialize)]
struct Period {
    starts: String,
    interactions: Option<i64>,
    people: Option<i64>,
    categories: Vec<Cell>,
}

#[derive(Deserialize)]
struct Cell {
    category_l1: String,
    category_l2: Option<String>,
    interactions: Option<i64>,
    people: Option<i64>,
}

impl Cell {
    fn name(&self) -> String {
        match &self.category_l2 {
            Some(l2) => format!("{} › {l2}", self.category_l1),
            None => self.category_l1.clone(),
        }
    }
}

#[derive(Deserialize)]
struct TaxonomyView {
    custom: bool,
    taxonomy: Taxonomy,
}

/// One cell as shown: its numbers, or why there are none.
struct Shown {
    interactions: Option<i64>,
    people: Option<i64>,
    /// Counted, but hidden by k-anonymity.
    hidden: bool,
}

impl Shown {
    fn of(interactions: Option<i64>, people: Option<i64>) -> Self {
        Self {
            hidden: interactions.is_none(),
            interactions,
            people,
        }
    }

    /// "(1 person)", "(7 people)"; none for nobody.
    fn people_label(&self) -> Option<String> {
        match self.people {
            Some(1) => Some("(1 person)".into()),
            Some(n) if n > 1 => Some(format!("({n} people)")),
            _ => None,
        }
    }

    const NONE: Shown = Shown {
        interactions: Some(0),
        people: Some(0),
        hidden: false,
    };
}

struct Line {
    name: String,
    cells: Vec<Shown>,
}

#[derive(Template)]
#[template(path = "patterns.html")]
struct PatternsPage {
    layout: Layout,
    by: &'static str,
    level: u8,
    min_people: u32,
    periods: Vec<String>,
    total: Line,
    lines: Vec<Line>,
    custom: bool,
    taxonomy: Taxonomy,
}

/// `GET /patterns?by=week|month&level=1|2`.
pub async fn show(console: Console, Query(params): Query<PatternsParams>) -> Response {
    let by = match params.by.as_deref() {
        Some("month") => "month",
        _ => "week",
    };
    let level = match params.level.as_deref() {
        Some("2") => 2,
        _ => 1,
    };
    let path = format!("/insights/patterns?by={by}&level={level}");
    let counts = console.api.get::<Insights>(&path);
    let taxonomy = console.api.get::<TaxonomyView>("/insights/taxonomy");
    let (insights, taxonomy) = match futures::join!(counts, taxonomy) {
        (Ok(insights), Ok(taxonomy)) => (insights, taxonomy),
        (Err(failure), _) | (_, Err(failure)) => return view::api_failure(failure),
    };
    view::render(&PatternsPage {
        layout: console.layout("Patterns", "patterns"),
        by,
        level,
        min_people: insights.min_people,
        periods: insights.periods.iter().map(|p| p.starts.clone()).collect(),
        total: Line {
            name: "All interactions".into(),
            cells: insights
                .periods
                .iter()
                .map(|p| Shown::of(p.interactions, p.people))
                .collect(),
        },
        lines: lines(&insights.periods, &taxonomy.taxonomy, level),
        custom: taxonomy.custom,
        taxonomy: taxonomy.taxonomy,
    })
}

/// A line per category, in the taxonomy's order, then any other category
/// counted (one since removed from the taxonomy, or Other); a period that
/// counted nothing under a category shows 0, unless it is hidden whole.
fn lines(periods: &[Period], taxonomy: &Taxonomy, level: u8) -> Vec<Line> {
    let mut names: Vec<String> = taxonomy
        .categories
        .iter()
        .flat_map(|c| match level {
            1 => vec![c.name.clone()],
            _ => c
                .subcategories
                .iter()
                .map(|s| format!("{} › {}", c.name, s.name))
                .collect(),
        })
        .collect();
    for cell in periods.iter().flat_map(|p| &p.categories) {
        let name = cell.name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| Line {
            cells: periods
                .iter()
                .map(|p| match p.categories.iter().find(|c| c.name() == name) {
                    Some(c) => Shown::of(c.interactions, c.people),
                    // A period hidden whole hides what it did not count too.
                    None if p.interactions.is_none() => Shown::of(None, None),
                    None => Shown::NONE,
                })
                .collect(),
            name,
        })
        .collect()
}
