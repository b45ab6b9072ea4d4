//! The store conformance suite on every backend: SQLite always, PostgreSQL when
//! STEWARD_TEST_POSTGRES_URL is set.

mod sqlite {
    steward_store::conformance_tests!(steward_testkit::sqlite_store);
}

mod postgres {
    steward_store::conformance_tests!(steward_testkit::postgres_store);
}
