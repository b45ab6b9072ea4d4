//! The categories an organization's interactions are counted under for
//! insights: two levels (`category_l1`, `category_l2`), with keywords that
//! label an interaction when no model does. Steward ships a default for
//! workplace assistants; an admin may replace it.

use serde::{Deserialize, Serialize};

/// The label of an interaction nothing in the taxonomy matched, at both levels.
pub const OTHER: &str = "Other";

const MAX_CATEGORIES: usize = 30;
const MAX_NAME_CHARS: usize = 60;
const MAX_KEYWORDS: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Taxonomy {
    /// The first level: 1 to 30 categories.
    #[schema(min_items = 1, max_items = 30)]
    pub categories: Vec<Category>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// 1 to 60 characters, spaces around it trimmed; categories of one
    /// name (ignoring case) are merged into the first.
    #[schema(min_length = 1, max_length = 60, pattern = r"\S")]
    pub name: String,
    /// The second level: 1 to 30, merged by name as categories are.
    #[schema(min_items = 1, max_items = 30)]
    pub subcategories: Vec<Subcategory>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subcategory {
    #[schema(min_length = 1, max_length = 60, pattern = r"\S")]
    pub name: String,
    /// Words or phrases (at most 50; blank ones are dropped) that label a
    /// message with this subcategory when no model is configured.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub keywords: Vec<String>,
}

/// (category_l1, category_l2).
pub type Label = (String, String);

impl Taxonomy {
    /// The taxonomy as it is kept: names and keywords trimmed, control
    /// characters in them replaced (they would reach logs, labels and
    /// metrics), blank keywords dropped, categories (and subcategories
    /// within one) of the same name, ignoring case, merged into the first;
    /// or the first problem with its sizes, in words.
    pub fn normalized(self) -> Result<Self, String> {
        fn clean(text: &str) -> String {
            let replaced = |c: char| {
                if c.is_control() {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            };
            text.trim().chars().map(replaced).collect()
        }
        fn merge<T>(
            items: Vec<T>,
            name: impl Fn(&T) -> String,
            absorb: impl Fn(&mut T, T),
        ) -> Vec<T> {
            let mut kept: Vec<T> = Vec::new();
            for item in items {
                let key = name(&item).to_lowercase();
                match kept.iter_mut().find(|k| name(k).to_lowercase() == key) {
                    Some(first) => absorb(first, item),
                    None => kept.push(item),
                }
            }
            kept
        }
        let categories = self
            .categories
            .into_iter()
            .map(|c| Category {
                name: clean(&c.name),
                subcategories: c
                    .subcategories
                    .into_iter()
                    .map(|s| Subcategory {
                        name: clean(&s.name),
                        keywords: s
                            .keywords
                            .iter()
                            .map(|k| clean(k))
                            .filter(|k| !k.is_empty())
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let categories = merge(
            categories,
            |c: &Category| c.name.clone(),
            |first, more| first.subcategories.extend(more.subcategories),
        );
        let categories: Vec<Category> = categories
            .into_iter()
            .map(|c| Category {
                subcategories: merge(
                    c.subcategories,
                    |s: &Subcategory| s.name.clone(),
                    |first, more| {
                        for keyword in more.keywords {
                            if !first.keywords.contains(&keyword) {
                                first.keywords.push(keyword);
                            }
                        }
                    },
                ),
                name: c.name,
            })
            .collect();
        let taxonomy = Self { categories };
        taxonomy.validate()?;
        Ok(taxonomy)
    }

    /// Checks names, sizes and uniqueness; the first problem, in words.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = |name: &str| {
            let chars = name.trim().chars().count();
            chars > 0 && chars <= MAX_NAME_CHARS && name.trim() == name
        };
        if self.categories.is_empty() || self.categories.len() > MAX_CATEGORIES {
            return Err(format!(
                "categories: 1 to {MAX_CATEGORIES} categories, not {}",
                self.categories.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for category in &self.categories {
            if !name_ok(&category.name) {
                return Err(format!(
                    "categories: '{}' is not a name of 1 to {MAX_NAME_CHARS} characters without spaces around it",
                    category.name
                ));
            }
            if !seen.insert(category.name.to_lowercase()) {
                return Err(format!("categories: '{}' appears twice", category.name));
            }
            let subcategories = &category.subcategories;
            if subcategories.is_empty() || subcategories.len() > MAX_CATEGORIES {
                return Err(format!(
                    "{}: 1 to {MAX_CATEGORIES} subcategories, not {}",
                    category.name,
                    subcategories.len()
                ));
            }
            let mut within = std::collections::HashSet::new();
            for sub in subcategories {
                if !name_ok(&sub.name) {
                    return Err(format!(
                        "{}: '{}' is not a name of 1 to {MAX_NAME_CHARS} characters without spaces around it",
                        category.name, sub.name
                    ));
                }
                if !within.insert(sub.name.to_lowercase()) {
                    return Err(format!("{}: '{}' appears twice", category.name, sub.name));
                }
                if sub.keywords.len() > MAX_KEYWORDS {
                    return Err(format!(
                        "{} / {}: at most {MAX_KEYWORDS} keywords",
                        category.name, sub.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The label named `l1` / `l2` (ignoring case), spelt as the taxonomy
    /// spells it.
    pub fn find(&self, l1: &str, l2: &str) -> Option<Label> {
        let category = self
            .categories
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(l1.trim()))?;
        let sub = category
            .subcategories
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(l2.trim()))?;
        Some((category.name.clone(), sub.name.clone()))
    }

    /// The subcategory whose keywords `text` holds most of (as whole words,
    /// ignoring case; the first in the taxonomy's order on a tie), else
    /// Other / Other.
    pub fn label_by_keywords(&self, text: &str) -> Label {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let holds = |keyword: &str| {
            let phrase: Vec<String> = keyword
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            !phrase.is_empty() && words.windows(phrase.len()).any(|w| w == phrase.as_slice())
        };
        let mut best: Option<(usize, Label)> = None;
        for category in &self.categories {
            for sub in &category.subcategories {
                let hits = sub.keywords.iter().filter(|k| holds(k)).count();
                if hits > 0 && best.as_ref().is_none_or(|(most, _)| hits > *most) {
                    best = Some((hits, (category.name.clone(), sub.name.clone())));
                }
            }
        }
        best.map_or_else(|| (OTHER.to_owned(), OTHER.to_owned()), |(_, label)| label)
    }

    /// The taxonomy Steward ships for workplace assistants.
    pub fn workplace() -> Self {
        let category = |name: &str, subs: &[(&str, &[&str])]| Category {
            name: name.to_owned(),
            subcategories: subs
                .iter()
                .map(|(name, keywords)| Subcategory {
                    name: (*name).to_owned(),
                    keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
                })
                .collect(),
        };
        Self {
            categories: vec![
                category(
                    "People & HR",
                    &[
                        (
                            "Leave & time off",
                            &[
                                "leave", "vacation", "holiday", "holidays", "time off", "sick",
                                "absence", "parental",
                            ],
                        ),
                        (
                            "Pay & benefits",
                            &[
                                "salary",
                                "pay",
                                "payslip",
                                "payroll",
                                "bonus",
                                "benefits",
                                "pension",
                                "insurance",
                            ],
                        ),
                        (
                            "Joining & leaving",
                            &[
                                "onboarding",
                                "first day",
                                "new starter",
                                "contract",
                                "resign",
                                "resignation",
                                "notice period",
                                "offboarding",
                            ],
                        ),
                        (
                            "Policies & conduct",
                            &[
                                "policy",
                                "policies",
                                "code of conduct",
                                "harassment",
                                "remote work",
                                "hybrid",
                                "dress code",
                            ],
                        ),
                        (
                            "Learning & careers",
                            &[
                                "training",
                                "course",
                                "promotion",
                                "career",
                                "review",
                                "appraisal",
                                "mentoring",
                            ],
                        ),
                    ],
                ),
                category(
                    "IT & tools",
                    &[
                        (
                            "Accounts & access",
                            &[
                                "password",
                                "login",
                                "log in",
                                "sign in",
                                "access",
                                "account",
                                "permission",
                                "mfa",
                                "2fa",
                                "locked",
                            ],
                        ),
                        (
                            "Devices",
                            &[
                                "laptop", "computer", "phone", "printer", "monitor", "headset",
                                "keyboard",
                            ],
                        ),
                        (
                            "Software & how-to",
                            &[
                                "install", "excel", "outlook", "teams", "slack", "software", "app",
                                "how do i", "vpn", "email",
                            ],
                        ),
                        (
                            "Security",
                            &[
                                "phishing",
                                "virus",
                                "malware",
                                "suspicious",
                                "security",
                                "breach",
                                "scam",
                            ],
                        ),
                    ],
                ),
                category(
                    "Finance",
                    &[
                        (
                            "Expenses",
                            &[
                                "expense",
                                "expenses",
                                "receipt",
                                "reimbursement",
                                "mileage",
                                "per diem",
                                "travel",
                            ],
                        ),
                        (
                            "Invoices & payments",
                            &[
                                "invoice",
                                "invoices",
                                "payment",
                                "supplier",
                                "vendor",
                                "purchase order",
                                "refund",
                            ],
                        ),
                        (
                            "Budgets",
                            &["budget", "forecast", "cost", "spend", "approval"],
                        ),
                    ],
                ),
                category(
                    "Customers",
                    &[
                        (
                            "Products & services",
                            &[
                                "product",
                                "feature",
                                "service",
                                "how does",
                                "does it",
                                "specification",
                            ],
                        ),
                        (
                            "Pricing & quotes",
                            &[
                                "price",
                                "pricing",
                                "quote",
                                "discount",
                                "plan",
                                "subscription",
                            ],
                        ),
                        (
                            "Orders & delivery",
                            &[
                                "order", "delivery", "shipping", "tracking", "dispatch", "parcel",
                            ],
                        ),
                        (
                            "Complaints & returns",
                            &[
                                "complaint",
                                "return",
                                "broken",
                                "damaged",
                                "faulty",
                                "cancel",
                                "unhappy",
                            ],
                        ),
                    ],
                ),
                category(
                    "Operations",
                    &[
                        (
                            "Processes & procedures",
                            &[
                                "process",
                                "procedure",
                                "checklist",
                                "steps",
                                "workflow",
                                "template",
                            ],
                        ),
                        (
                            "Scheduling & meetings",
                            &[
                                "meeting",
                                "schedule",
                                "calendar",
                                "shift",
                                "rota",
                                "book a room",
                            ],
                        ),
                        (
                            "Facilities",
                            &[
                                "office", "desk", "parking", "building", "kitchen", "canteen",
                                "badge",
                            ],
                        ),
                    ],
                ),
                category(
                    "Writing & research",
                    &[
                        (
                            "Writing & editing",
                            &[
                                "write",
                                "draft",
                                "rewrite",
                                "proofread",
                                "translate",
                                "summarise",
                                "summarize",
                            ],
                        ),
                        (
                            "Research & analysis",
                            &[
                                "research", "analyse", "analyze", "compare", "report", "data",
                            ],
                        ),
                    ],
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_taxonomy_is_valid_and_labels_by_keywords() {
        let taxonomy = Taxonomy::workplace();
        taxonomy.validate().unwrap();
        let label = |text: &str| taxonomy.label_by_keywords(text);
        assert_eq!(
            label("How many days of sick leave do I get?"),
            ("People & HR".into(), "Leave & time off".into())
        );
        assert_eq!(
            label("I forgot my password and my account is locked"),
            ("IT & tools".into(), "Accounts & access".into())
        );
        assert_eq!(label("Tell me a joke"), (OTHER.into(), OTHER.into()));
        // Whole words only: "pay" is not in "paying attention"? It is a word
        // there; "app" is not in "apple".
        assert_eq!(label("an apple"), (OTHER.into(), OTHER.into()));
    }

    #[test]
    fn a_taxonomy_is_trimmed_and_merged_by_name_before_it_is_kept() {
        let sub = |name: &str, keywords: &[&str]| Subcategory {
            name: name.into(),
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        };
        let given = Taxonomy {
            categories: vec![
                Category {
                    name: " Travel ".into(),
                    subcategories: vec![
                        sub("Visas", &["passport", " "]),
                        sub("visas ", &["visa", "passport"]),
                    ],
                },
                Category {
                    name: "TRAVEL".into(),
                    subcategories: vec![sub("Flights", &[])],
                },
            ],
        };
        let kept = given.normalized().unwrap();
        assert_eq!(
            kept,
            Taxonomy {
                categories: vec![Category {
                    name: "Travel".into(),
                    subcategories: vec![sub("Visas", &["passport", "visa"]), sub("Flights", &[])],
                }],
            }
        );
        let controls = Taxonomy {
            categories: vec![Category {
                name: "Tra\u{0}vel\u{1}\n".into(),
                subcategories: vec![sub("x", &["a\u{7}b"])],
            }],
        };
        let kept = controls.normalized().unwrap();
        assert_eq!(kept.categories[0].name, "Tra\u{fffd}vel\u{fffd}");
        assert_eq!(kept.categories[0].subcategories[0].keywords, ["a\u{fffd}b"]);
        let blank = Taxonomy {
            categories: vec![Category {
                name: "  ".into(),
                subcategories: vec![sub("x", &[])],
            }],
        };
        assert!(blank.normalized().is_err());
    }

    #[test]
    fn bad_taxonomies_are_refused_with_the_reason() {
        let mut taxonomy = Taxonomy::workplace();
        taxonomy.categories[1].name = "people & hr".into();
        assert!(taxonomy.validate().unwrap_err().contains("twice"));
        let mut taxonomy = Taxonomy::workplace();
        taxonomy.categories[0].subcategories.clear();
        assert!(taxonomy.validate().is_err());
        let mut taxonomy = Taxonomy::workplace();
        taxonomy.categories[0].name = " padded".into();
        assert!(taxonomy.validate().is_err());
        let mut taxonomy = Taxonomy::workplace();
        taxonomy.categories[0].subcategories[0].keywords = vec!["x".into(); 51];
        assert!(taxonomy.validate().is_err());
        assert!(Taxonomy { categories: vec![] }.validate().is_err());
        assert_eq!(
            Taxonomy::workplace().find("it & TOOLS", "devices"),
            Some(("IT & tools".into(), "Devices".into()))
        );
    }
}
