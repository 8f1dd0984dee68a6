-- Erasure of a user (service.EraseUser, docs/SECURITY.md "Erasure"). The
-- user's rows are deleted by the app role in a transaction of that user
-- (owner_rows). The audit chain is different: the app role may only
-- append to it, so idflow_audit_erase() — SECURITY DEFINER, owned by the
-- schema owner like idflow_audit_links() — does the one edit erasure
-- needs, and nothing else:
--   1. the chain head is locked (appends wait, on every replica);
--   2. in every event that names the user — as its actor (user_id equal),
--      or inside its resource, request id or detail — the id is replaced
--      by p_mark, which must be "erased:" and 64 hex digits (the keyed
--      hash the service computes; the key never reaches the database);
--   3. every event from the first one changed to the head is re-hashed
--      with idflow_audit_hash(), which is idflow.AuditHash (audit.go) in
--      SQL, byte for byte, and the head moved to the new last hash.
-- The Go verifier (VerifyAuditChain) checks the result, so a difference
-- between the two hashes would show as a broken chain in the tests.
-- The owner's own updates pass FORCE ROW LEVEL SECURITY through the
-- audit_erase policy, open only while the function sets idflow.audit_erase.

CREATE FUNCTION idflow_audit_field(v text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    RETURN octet_length(v)::text || ':' || v || E'\n';

CREATE FUNCTION idflow_audit_hash(seq bigint, at timestamptz, user_id text, tenant_id text, action text, resource text,
                                  outcome text, request_id text, peer text, detail text, prev_hash text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    RETURN encode(sha256(convert_to('idflow-audit-v1' || E'\n'
        || idflow_audit_field(seq::text)
        || idflow_audit_field(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || idflow_audit_field(user_id) || idflow_audit_field(tenant_id) || idflow_audit_field(action)
        || idflow_audit_field(resource) || idflow_audit_field(outcome) || idflow_audit_field(request_id)
        || idflow_audit_field(peer) || idflow_audit_field(detail) || idflow_audit_field(prev_hash), 'UTF8')), 'hex');

CREATE POLICY audit_erase ON audit_events FOR ALL TO CURRENT_USER
    USING (current_setting('idflow.audit_erase', true) = 'on')
    WITH CHECK (current_setting('idflow.audit_erase', true) = 'on');

CREATE FUNCTION idflow_audit_erase(p_user text, p_mark text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
DECLARE
    first_seq bigint;
    prev      text;
    h         text;
    r         record;
    n         bigint := 0;
BEGIN
    IF p_user IS NULL OR p_user = '' OR p_mark IS NULL OR p_mark !~ '^erased:[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'idflow_audit_erase: a user id and an erasure mark are required';
    END IF;
    PERFORM 1 FROM audit_chain_head FOR UPDATE;
    PERFORM set_config('idflow.audit_erase', 'on', true);
    SELECT min(a.seq) INTO first_seq FROM audit_events AS a
        WHERE a.user_id = p_user OR strpos(a.resource, p_user) > 0 OR strpos(a.request_id, p_user) > 0
           OR strpos(a.detail, p_user) > 0;
    IF first_seq IS NOT NULL THEN
        UPDATE audit_events AS a SET user_id = CASE WHEN a.user_id = p_user THEN p_mark ELSE a.user_id END,
                resource = replace(a.resource, p_user, p_mark), request_id = replace(a.request_id, p_user, p_mark),
                detail = replace(a.detail, p_user, p_mark)
            WHERE a.user_id = p_user OR strpos(a.resource, p_user) > 0 OR strpos(a.request_id, p_user) > 0
               OR strpos(a.detail, p_user) > 0;
        SELECT a.hash INTO prev FROM audit_events AS a WHERE a.seq = first_seq - 1;
        IF prev IS NULL THEN
            prev := repeat('0', 64);
        END IF;
        FOR r IN SELECT * FROM audit_events AS a WHERE a.seq >= first_seq ORDER BY a.seq LOOP
            h := idflow_audit_hash(r.seq, r.at, r.user_id, r.tenant_id, r.action, r.resource, r.outcome,
                                   r.request_id, r.peer, r.detail, prev);
            UPDATE audit_events AS a SET prev_hash = prev, hash = h WHERE a.seq = r.seq;
            prev := h;
            n := n + 1;
        END LOOP;
        UPDATE audit_chain_head SET hash = prev;
    END IF;
    PERFORM set_config('idflow.audit_erase', 'off', true);
    RETURN n;
END
$$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION idflow_audit_erase(text, text) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION idflow_audit_hash(bigint, timestamptz, text, text, text, text, text, text, text, text, text) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION idflow_audit_field(text) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION idflow_audit_erase(text, text) FROM PUBLIC;
