//! Diesel table definitions; the SQL lives in `migrations/{sqlite,postgres}`.

diesel::table! {
    documents (uid) {
        uid -> BigInt,
        parent_uid -> Nullable<BigInt>,
        path -> Text,
        id -> Text,
        module -> Text,
        portal_type -> Text,
        title -> Text,
        reference -> Nullable<Text>,
        description -> Text,
        owner -> Text,
        creation_date -> Timestamp,
        modification_date -> Timestamp,
        serial -> BigInt,
        properties -> Text,
        next_child_id -> BigInt,
        block_acquisition -> Bool,
    }
}

diesel::table! {
    relations (source_uid, name, target_uid) {
        source_uid -> BigInt,
        name -> Text,
        target_uid -> BigInt,
        position -> Integer,
    }
}

diesel::table! {
    users (login) {
        login -> Text,
        password_hash -> Text,
        roles -> Text,
        creation_date -> Timestamp,
        group_ids -> Text,
        person_uid -> Nullable<BigInt>,
    }
}

diesel::table! {
    local_roles (uid, principal, role) {
        uid -> BigInt,
        principal -> Text,
        role -> Text,
    }
}

diesel::table! {
    security_sets (id) {
        id -> BigInt,
        principals -> Text,
    }
}

diesel::table! {
    security_set_principals (principal, set_id) {
        principal -> Text,
        set_id -> BigInt,
    }
}

diesel::table! {
    workflow_states (uid, workflow) {
        uid -> BigInt,
        workflow -> Text,
        state -> Text,
    }
}

diesel::table! {
    workflow_history (id) {
        id -> BigInt,
        uid -> BigInt,
        workflow -> Text,
        transition -> Text,
        from_state -> Text,
        to_state -> Text,
        actor -> Text,
        time -> Timestamp,
        comment -> Text,
        variables -> Text,
    }
}

diesel::table! {
    user_groups (id) {
        id -> Text,
        title -> Text,
        roles -> Text,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Text,
        login -> Text,
        csrf_token -> Text,
        creation_date -> Timestamp,
        expiration_date -> Timestamp,
        revoked -> Bool,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        login -> Text,
        name -> Text,
        token_hash -> Text,
        creation_date -> Timestamp,
        last_used -> Nullable<Timestamp>,
        revoked -> Bool,
    }
}

diesel::table! {
    login_failures (key) {
        key -> Text,
        failures -> Integer,
        last_failure -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    documents,
    relations,
    users,
    local_roles,
    security_sets,
    security_set_principals,
    workflow_states,
    workflow_history,
    user_groups,
    sessions,
    api_tokens,
    login_failures,
);

diesel::table! {
    fulltext_outbox (id) {
        id -> BigInt,
        uid -> BigInt,
        index_id -> Text,
    }
}

diesel::table! {
    fulltext_indexes (id) {
        id -> Text,
        last_seen -> Timestamp,
    }
}

diesel::table! {
    activities (id) {
        id -> BigInt,
        path -> Text,
        method -> Text,
        args -> Text,
        actor -> Text,
        priority -> Integer,
        tag -> Nullable<Text>,
        not_before -> Timestamp,
        state -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        claimed_by -> Nullable<Text>,
        claimed_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        creation_date -> Timestamp,
    }
}

diesel::table! {
    activity_tags (tag) {
        tag -> Text,
        activity_id -> BigInt,
        claimed_at -> Timestamp,
    }
}

diesel::table! {
    activity_runs (id) {
        id -> BigInt,
        activity_id -> BigInt,
        tag -> Nullable<Text>,
        worker -> Text,
        started -> Timestamp,
        finished -> Timestamp,
        ok -> Bool,
        error -> Nullable<Text>,
    }
}
