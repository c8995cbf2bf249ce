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
    }
}

diesel::allow_tables_to_appear_in_same_query!(documents, relations, users);
