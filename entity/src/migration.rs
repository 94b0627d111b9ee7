//! Schema migrations, one module per step, for SQLite and PostgreSQL alike.

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261122_000002_alias_pinned::Migration),
            Box::new(m20261122_000003_accounts::Migration),
            Box::new(m20261122_000004_alias_list_index::Migration),
            Box::new(m20261122_000005_sessions::Migration),
            Box::new(m20261122_000006_user_settings::Migration),
            Box::new(m20261202_000007_pipeline::Migration),
            Box::new(m20261202_000008_account_hardening::Migration),
            Box::new(m20261202_000009_message_parts::Migration),
            Box::new(m20261202_000010_message_client::Migration),
            Box::new(m20261202_000011_block_behaviour::Migration),
            Box::new(m20261202_000012_quarantine::Migration),
            Box::new(m20261206_000013_worker::Migration),
            Box::new(m20261206_000014_dkim_rotation::Migration),
            Box::new(m20261206_000015_alias_trash::Migration),
            Box::new(m20261206_000016_authorized_addresses::Migration),
            Box::new(m20261207_000017_spam_threshold::Migration),
        ]
    }
}

mod m20261122_000001_init {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261122_000001_init"
        }
    }

    fn created(t: &mut TableCreateStatement) -> &mut TableCreateStatement {
        t.col(timestamp_with_time_zone("created_at"))
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.create_table(
                created(
                    Table::create()
                        .table("users")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(string_uniq("email"))
                        .col(string_null("name"))
                        .col(string_null("password_hash"))
                        .col(big_integer_null("default_mailbox_id"))
                        .col(integer_null("alias_quota")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("api_keys")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("user_id"))
                        .col(string("name"))
                        .col(string_uniq("key_hash"))
                        .col(big_integer("use_count").default(0))
                        .col(timestamp_with_time_zone_null("last_used")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("mailboxes")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("user_id"))
                        .col(string_uniq("email"))
                        .col(boolean("verified")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("aliases")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("user_id"))
                        .col(string_uniq("email"))
                        .col(boolean("enabled"))
                        .col(string_null("name"))
                        .col(text_null("note")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("alias_mailboxes")
                    .if_not_exists()
                    .col(big_integer("alias_id"))
                    .col(big_integer("mailbox_id"))
                    .primary_key(Index::create().col("alias_id").col("mailbox_id"))
                    .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("deleted_aliases")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(string_uniq("email")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("contacts")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("user_id"))
                        .col(big_integer("alias_id"))
                        .col(string("email"))
                        .col(string_null("name"))
                        .col(string_uniq("reply_email"))
                        .col(boolean("blocked")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("outbound_messages")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(blob("body")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("deliveries")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("message_id"))
                        .col(big_integer_null("user_id"))
                        .col(big_integer_null("alias_id"))
                        .col(big_integer_null("contact_id"))
                        .col(string("kind"))
                        .col(string("rcpt"))
                        .col(string("status"))
                        .col(integer("attempts"))
                        .col(big_integer("next_attempt_at"))
                        .col(big_integer("expires_at"))
                        .col(text_null("last_error"))
                        .col(timestamp_with_time_zone("updated_at")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("activities")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("user_id"))
                        .col(big_integer("alias_id"))
                        .col(big_integer_null("contact_id"))
                        .col(string("kind"))
                        .col(text_null("detail")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("message_ids")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(big_integer("alias_id"))
                        .col(string_uniq("our_id"))
                        .col(string("original_id")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                created(
                    Table::create()
                        .table("dkim_keys")
                        .if_not_exists()
                        .col(big_pk_auto("id"))
                        .col(string("domain"))
                        .col(string("selector"))
                        .col(string("algorithm"))
                        .col(blob("private_key"))
                        .col(text("public_key")),
                )
                .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("secrets")
                    .if_not_exists()
                    .col(string("name").primary_key())
                    .col(blob("value"))
                    .to_owned(),
            )
            .await?;

            let indexes = [
                ("idx_api_keys_user", "api_keys", &["user_id"][..], false),
                ("idx_mailboxes_user", "mailboxes", &["user_id"], false),
                ("idx_aliases_user", "aliases", &["user_id", "id"], false),
                (
                    "idx_alias_mailboxes_mailbox",
                    "alias_mailboxes",
                    &["mailbox_id"],
                    false,
                ),
                (
                    "idx_contacts_alias_email",
                    "contacts",
                    &["alias_id", "email"],
                    true,
                ),
                (
                    "idx_deliveries_due",
                    "deliveries",
                    &["status", "next_attempt_at"],
                    false,
                ),
                (
                    "idx_deliveries_message",
                    "deliveries",
                    &["message_id"],
                    false,
                ),
                (
                    "idx_activities_alias",
                    "activities",
                    &["alias_id", "id"],
                    false,
                ),
                (
                    "idx_message_ids_original",
                    "message_ids",
                    &["original_id"],
                    false,
                ),
                (
                    "idx_dkim_keys_domain",
                    "dkim_keys",
                    &["domain", "selector"],
                    true,
                ),
            ];
            for (name, table, cols, unique) in indexes {
                let mut index = Index::create();
                index.name(name).table(table).if_not_exists();
                for col in cols {
                    index.col(*col);
                }
                if unique {
                    index.unique();
                }
                m.create_index(index.to_owned()).await?;
            }
            Ok(())
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for table in [
                "secrets",
                "dkim_keys",
                "message_ids",
                "activities",
                "deliveries",
                "outbound_messages",
                "contacts",
                "deleted_aliases",
                "alias_mailboxes",
                "aliases",
                "mailboxes",
                "api_keys",
                "users",
            ] {
                m.drop_table(Table::drop().table(table).if_exists().to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

mod m20261122_000002_alias_pinned {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261122_000002_alias_pinned"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("aliases")
                    .add_column(boolean("pinned").default(false))
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("aliases")
                    .drop_column("pinned")
                    .to_owned(),
            )
            .await
        }
    }
}

mod m20261122_000003_accounts {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261122_000003_accounts"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            // SQLite alters one column per statement.
            let user_columns = [
                boolean("activated").default(true).to_owned(),
                boolean("disabled").default(false).to_owned(),
                string_null("totp_secret"),
                big_integer_null("totp_last_step"),
            ];
            for col in user_columns {
                m.alter_table(Table::alter().table("users").add_column(col).to_owned())
                    .await?;
            }
            m.alter_table(
                Table::alter()
                    .table("api_keys")
                    .add_column(timestamp_with_time_zone_null("sudo_at"))
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("account_tokens")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    .col(string("purpose"))
                    .col(string_uniq("token_hash"))
                    .col(string_null("code_hash"))
                    .col(integer("tries").default(0))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_account_tokens_user")
                    .table("account_tokens")
                    .col("user_id")
                    .col("purpose")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_table(Table::drop().table("account_tokens").if_exists().to_owned())
                .await?;
            m.alter_table(
                Table::alter()
                    .table("api_keys")
                    .drop_column("sudo_at")
                    .to_owned(),
            )
            .await?;
            for col in ["activated", "disabled", "totp_secret", "totp_last_step"] {
                m.alter_table(Table::alter().table("users").drop_column(col).to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

/// Alias lists are ordered pinned first, newest first, per user: one index serves that order.
mod m20261122_000004_alias_list_index {
    use sea_orm_migration::prelude::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261122_000004_alias_list_index"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.create_index(
                Index::create()
                    .name("idx_aliases_user_pinned_id")
                    .table("aliases")
                    .col("user_id")
                    .col("pinned")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_index(
                Index::drop()
                    .name("idx_aliases_user_pinned_id")
                    .table("aliases")
                    .to_owned(),
            )
            .await
        }
    }
}

mod m20261122_000005_sessions {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261122_000005_sessions"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.create_table(
                Table::create()
                    .table("sessions")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string_uniq("token_hash"))
                    .col(big_integer("user_id"))
                    .col(string("csrf_token"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_table(Table::drop().table("sessions").if_exists().to_owned())
                .await
        }
    }
}

mod m20261122_000006_user_settings {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261122_000006_user_settings"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            let columns = [
                string("alias_generator").default("word").to_owned(),
                string("sender_format").default("AT").to_owned(),
                string("random_alias_suffix").default("word").to_owned(),
                boolean("notification").default(true).to_owned(),
                string_null("default_alias_domain"),
            ];
            for col in columns {
                m.alter_table(Table::alter().table("users").add_column(col).to_owned())
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for col in [
                "alias_generator",
                "sender_format",
                "random_alias_suffix",
                "notification",
                "default_alias_domain",
            ] {
                m.alter_table(Table::alter().table("users").drop_column(col).to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

/// The pipeline re-cut: messages are stored once as received and rendered at delivery;
/// deliveries carry the instance that claims them.
mod m20261202_000007_pipeline {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261202_000007_pipeline"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.rename_table(
                Table::rename()
                    .table("outbound_messages", "messages")
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table("messages")
                    .rename_column("body", "raw")
                    .to_owned(),
            )
            .await?;
            for col in [string_null("mail_from"), string_null("token")] {
                m.alter_table(Table::alter().table("messages").add_column(col).to_owned())
                    .await?;
            }
            m.alter_table(
                Table::alter()
                    .table("deliveries")
                    .add_column(string_null("claimed_by"))
                    .to_owned(),
            )
            .await?;
            // Bodies queued before this migration were stored rendered and signed.
            m.get_connection()
                .execute_unprepared(
                    "UPDATE deliveries SET kind = 'prepared' WHERE status = 'queued'",
                )
                .await?;
            m.create_index(
                Index::create()
                    .name("idx_deliveries_claimed_by")
                    .table("deliveries")
                    .col("claimed_by")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_index(
                Index::drop()
                    .name("idx_deliveries_claimed_by")
                    .table("deliveries")
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table("deliveries")
                    .drop_column("claimed_by")
                    .to_owned(),
            )
            .await?;
            for col in ["mail_from", "token"] {
                m.alter_table(Table::alter().table("messages").drop_column(col).to_owned())
                    .await?;
            }
            m.alter_table(
                Table::alter()
                    .table("messages")
                    .rename_column("raw", "body")
                    .to_owned(),
            )
            .await?;
            m.rename_table(
                Table::rename()
                    .table("messages", "outbound_messages")
                    .to_owned(),
            )
            .await
        }
    }
}

/// Accounts hardening: sudo is a property of a session proven with a password, a TOTP secret
/// is pending until a code confirms it, a mailbox address is unique among verified mailboxes
/// only (so an unverified claim blocks nobody), and failed sign-in attempts are counted in
/// the database so limits hold across API instances.
mod m20261202_000008_account_hardening {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;
    use sea_orm_migration::sea_orm::DatabaseBackend;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261202_000008_account_hardening"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("sessions")
                    .add_column(timestamp_with_time_zone_null("sudo_at"))
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table("users")
                    .add_column(string_null("totp_pending"))
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("auth_attempts")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string("scope"))
                    .col(string("subject"))
                    .col(timestamp_with_time_zone("at"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_auth_attempts_subject")
                    .table("auth_attempts")
                    .col("scope")
                    .col("subject")
                    .col("at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
            let db = m.get_connection();
            match m.get_database_backend() {
                DatabaseBackend::Sqlite => {
                    // A column-level UNIQUE cannot be dropped in SQLite: rebuild the table
                    // (no foreign keys point at it). One batch, so it runs on one connection
                    // of the pool and as one transaction.
                    db.execute_unprepared(
                        "BEGIN IMMEDIATE; \
                         CREATE TABLE mailboxes_new ( \
                           id integer NOT NULL PRIMARY KEY AUTOINCREMENT, \
                           user_id integer NOT NULL, \
                           email varchar NOT NULL, \
                           verified boolean NOT NULL, \
                           created_at timestamp_with_timezone_text NOT NULL); \
                         INSERT INTO mailboxes_new (id, user_id, email, verified, created_at) \
                           SELECT id, user_id, email, verified, created_at FROM mailboxes; \
                         DROP TABLE mailboxes; \
                         ALTER TABLE mailboxes_new RENAME TO mailboxes; \
                         CREATE INDEX idx_mailboxes_user ON mailboxes (user_id); \
                         CREATE INDEX idx_mailboxes_email ON mailboxes (email); \
                         CREATE UNIQUE INDEX idx_mailboxes_verified_email \
                           ON mailboxes (email) WHERE verified; \
                         COMMIT;",
                    )
                    .await?;
                }
                _ => {
                    db.execute_unprepared(
                        "ALTER TABLE mailboxes DROP CONSTRAINT IF EXISTS mailboxes_email_key; \
                         CREATE INDEX IF NOT EXISTS idx_mailboxes_email ON mailboxes (email); \
                         CREATE UNIQUE INDEX IF NOT EXISTS idx_mailboxes_verified_email \
                           ON mailboxes (email) WHERE verified",
                    )
                    .await?;
                }
            }
            Ok(())
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            let db = m.get_connection();
            db.execute_unprepared("DROP INDEX IF EXISTS idx_mailboxes_verified_email")
                .await?;
            db.execute_unprepared("DROP INDEX IF EXISTS idx_mailboxes_email")
                .await?;
            // Unverified duplicates cannot survive the old global uniqueness.
            db.execute_unprepared(
                "DELETE FROM mailboxes WHERE verified = false AND email IN \
                 (SELECT email FROM mailboxes GROUP BY email HAVING COUNT(*) > 1)",
            )
            .await?;
            db.execute_unprepared("CREATE UNIQUE INDEX mailboxes_email_key ON mailboxes (email)")
                .await?;
            m.drop_table(Table::drop().table("auth_attempts").if_exists().to_owned())
                .await?;
            m.alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("totp_pending")
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table("sessions")
                    .drop_column("sudo_at")
                    .to_owned(),
            )
            .await
        }
    }
}

/// Large messages are stored in pieces, so storing and loading one copies a piece at a time.
mod m20261202_000009_message_parts {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261202_000009_message_parts"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("messages")
                    .add_column(integer("parts").default(0))
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("message_parts")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("message_id"))
                    .col(integer("seq"))
                    .col(blob("bytes"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_message_parts_message")
                    .table("message_parts")
                    .col("message_id")
                    .col("seq")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_table(Table::drop().table("message_parts").if_exists().to_owned())
                .await?;
            m.alter_table(
                Table::alter()
                    .table("messages")
                    .drop_column("parts")
                    .to_owned(),
            )
            .await
        }
    }
}

/// A stored message keeps who delivered it to us, so a forward can be sealed (ARC) with the
/// same checks at delivery as at receipt.
mod m20261202_000010_message_client {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261202_000010_message_client"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for col in [string_null("client_ip"), string_null("helo")] {
                m.alter_table(Table::alter().table("messages").add_column(col).to_owned())
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for col in ["client_ip", "helo"] {
                m.alter_table(Table::alter().table("messages").drop_column(col).to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

/// What a blocked sender hears, per user.
mod m20261202_000011_block_behaviour {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261202_000011_block_behaviour"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("users")
                    .add_column(string("block_behaviour").default("return_2xx"))
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("block_behaviour")
                    .to_owned(),
            )
            .await
        }
    }
}

/// The quarantine, and each user's choice for mail that fails a DMARC p=quarantine.
mod m20261202_000012_quarantine {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261202_000012_quarantine"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("users")
                    .add_column(string("dmarc_quarantine").default("warn"))
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("quarantine")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    .col(big_integer("alias_id"))
                    .col(big_integer("message_id"))
                    .col(string("sender"))
                    .col(string_null("subject"))
                    .col(string("reason"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_quarantine_user")
                    .table("quarantine")
                    .col("user_id")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_table(Table::drop().table("quarantine").if_exists().to_owned())
                .await?;
            m.alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("dmarc_quarantine")
                    .to_owned(),
            )
            .await
        }
    }
}

/// The worker's tables: in-app notifications, classified bounces, job leases; mailboxes that
/// bounce are disabled; aliases keep the counts of pruned activity.
mod m20261206_000013_worker {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261206_000013_worker"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.create_table(
                Table::create()
                    .table("notifications")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    .col(string("kind"))
                    .col(string("title"))
                    .col(text("message"))
                    .col(big_integer_null("alias_id"))
                    .col(boolean("read").default(false))
                    .col(boolean("emailed").default(false))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_notifications_user")
                    .table("notifications")
                    .col("user_id")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("bounces")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    .col(big_integer_null("alias_id"))
                    .col(big_integer_null("delivery_id"))
                    .col(big_integer_null("mailbox_id"))
                    .col(string("phase"))
                    .col(string("class"))
                    .col(string("rcpt"))
                    .col(string_null("status"))
                    .col(text_null("diagnostic"))
                    .col(string_null("remote_mta"))
                    .col(boolean("counts").default(false))
                    .col(big_integer_null("message_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_bounces_mailbox")
                    .table("bounces")
                    .col("mailbox_id")
                    .col("created_at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_bounces_user")
                    .table("bounces")
                    .col("user_id")
                    .col("id")
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
            m.create_table(
                Table::create()
                    .table("job_leases")
                    .if_not_exists()
                    .col(string("name").primary_key())
                    .col(string_null("holder"))
                    .col(big_integer("until").default(0))
                    .col(timestamp_with_time_zone_null("last_run_at"))
                    .col(text_null("last_result"))
                    .to_owned(),
            )
            .await?;
            m.alter_table(
                Table::alter()
                    .table("mailboxes")
                    .add_column(boolean("disabled").default(false))
                    .to_owned(),
            )
            .await?;
            for col in ["pruned_forwards", "pruned_blocks", "pruned_replies"] {
                m.alter_table(
                    Table::alter()
                        .table("aliases")
                        .add_column(big_integer(col).default(0))
                        .to_owned(),
                )
                .await?;
            }
            m.create_index(
                Index::create()
                    .name("idx_activities_created")
                    .table("activities")
                    .col("created_at")
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for t in ["notifications", "bounces", "job_leases"] {
                m.drop_table(Table::drop().table(t).if_exists().to_owned())
                    .await?;
            }
            m.alter_table(
                Table::alter()
                    .table("mailboxes")
                    .drop_column("disabled")
                    .to_owned(),
            )
            .await?;
            for col in ["pruned_forwards", "pruned_blocks", "pruned_replies"] {
                m.alter_table(Table::alter().table("aliases").drop_column(col).to_owned())
                    .await?;
            }
            Ok(())
        }
    }
}

/// DKIM keys rotate (pending until published, active, retiring during the overlap) and are
/// stored encrypted.
mod m20261206_000014_dkim_rotation {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261206_000014_dkim_rotation"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            for col in [
                string("state").default("active").to_owned(),
                boolean("encrypted").default(false).to_owned(),
                timestamp_with_time_zone_null("activated_at"),
                timestamp_with_time_zone_null("retire_after"),
            ] {
                m.alter_table(Table::alter().table("dkim_keys").add_column(col).to_owned())
                    .await?;
            }
            m.create_table(
                Table::create()
                    .table("domain_checks")
                    .if_not_exists()
                    .col(string("domain").primary_key())
                    .col(timestamp_with_time_zone("checked_at"))
                    .col(boolean("ok"))
                    .col(text("findings"))
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_table(Table::drop().table("domain_checks").if_exists().to_owned())
                .await?;
            for col in ["state", "encrypted", "activated_at", "retire_after"] {
                m.alter_table(
                    Table::alter()
                        .table("dkim_keys")
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
            }
            Ok(())
        }
    }
}

/// A deleted alias waits in the trash (mail to it is blocked) until the retention job purges it.
mod m20261206_000015_alias_trash {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261206_000015_alias_trash"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("aliases")
                    .add_column(timestamp_with_time_zone_null("deleted_at"))
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("aliases")
                    .drop_column("deleted_at")
                    .to_owned(),
            )
            .await
        }
    }
}

/// Addresses allowed to send as one of a user's mailboxes through reverse aliases.
mod m20261206_000016_authorized_addresses {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261206_000016_authorized_addresses"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.create_table(
                Table::create()
                    .table("authorized_addresses")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("user_id"))
                    .col(big_integer("mailbox_id"))
                    .col(string("email"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
            m.create_index(
                Index::create()
                    .name("idx_authorized_addresses_mailbox_email")
                    .table("authorized_addresses")
                    .col("mailbox_id")
                    .col("email")
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.drop_table(
                Table::drop()
                    .table("authorized_addresses")
                    .if_exists()
                    .to_owned(),
            )
            .await
        }
    }
}

/// Each user's spam threshold: mail a trusted upstream filter scored above it is held.
mod m20261207_000017_spam_threshold {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::*;

    pub struct Migration;

    impl MigrationName for Migration {
        fn name(&self) -> &str {
            "m20261207_000017_spam_threshold"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("users")
                    .add_column(integer_null("spam_threshold"))
                    .to_owned(),
            )
            .await
        }

        async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
            m.alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("spam_threshold")
                    .to_owned(),
            )
            .await
        }
    }
}
