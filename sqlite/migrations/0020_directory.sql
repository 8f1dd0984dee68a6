-- Identity lifecycle (issue 13): what directories provision over SCIM, per
-- tenant, and whether a user is disabled. Every row carries its tenant: a
-- directory (a SCIM client) reads and writes its own token's tenant only,
-- and a user is disabled in one tenant, never by another tenant's
-- directory. The same user id in two tenants names two users.

-- user_states: a user's lifecycle. A row exists once a user was disabled
-- (by SCIM active:false or an admin) or provisioned; disabled = 1 refuses
-- every credential of the user (auth's revocation set is loaded from it).
CREATE TABLE user_states (
    tenant_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL CHECK (user_id <> ''),
    disabled   INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    updated_at INTEGER NOT NULL, -- Unix nanoseconds
    PRIMARY KEY (tenant_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX user_states_disabled ON user_states (disabled) WHERE disabled = 1;

-- directory_users: SCIM Users. user_id is the externalId (Entra: the oid),
-- or the resource id when the directory sends none. *_key columns are the
-- lower-cased names SCIM compares case-insensitively (userName,
-- displayName) and keeps unique per tenant. attributes is the SCIM
-- document as last written (JSON text).
CREATE TABLE directory_users (
    id            TEXT    NOT NULL PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    user_id       TEXT    NOT NULL CHECK (user_id <> ''),
    user_name     TEXT    NOT NULL,
    user_name_key TEXT    NOT NULL,
    external_id   TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant_id, user_name_key),
    UNIQUE (tenant_id, user_id)
) STRICT;
CREATE INDEX directory_users_tenant_created ON directory_users (tenant_id, created_at, id);
CREATE INDEX directory_users_tenant_external ON directory_users (tenant_id, external_id);

-- directory_groups: SCIM Groups; display_name_key unique per tenant.
CREATE TABLE directory_groups (
    id               TEXT    NOT NULL PRIMARY KEY,
    tenant_id        TEXT    NOT NULL,
    display_name     TEXT    NOT NULL,
    display_name_key TEXT    NOT NULL,
    external_id      TEXT    NOT NULL,
    attributes       TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (tenant_id, display_name_key)
) STRICT;
CREATE INDEX directory_groups_tenant_created ON directory_groups (tenant_id, created_at, id);

-- directory_members: a group's members, each a directory user of the same
-- tenant; user_id is that user's (so a user's groups are read by user id).
CREATE TABLE directory_members (
    tenant_id TEXT NOT NULL,
    group_id  TEXT NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES directory_users (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL CHECK (user_id <> ''),
    PRIMARY KEY (group_id, member_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX directory_members_user ON directory_members (tenant_id, user_id);
CREATE INDEX directory_members_member ON directory_members (member_id);
