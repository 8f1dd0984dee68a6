-- A tenant admin's lists (issue 10): the users and the audit events of one
-- tenant, led by the tenant. An audit event's tenant is its actor's.
CREATE INDEX users_tenant_first_seen ON users (tenant_id, first_seen, user_id);
CREATE INDEX audit_events_tenant_seq ON audit_events (tenant_id, seq, id);
