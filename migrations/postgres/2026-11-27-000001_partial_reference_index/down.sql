DROP INDEX documents_type_reference;
CREATE UNIQUE INDEX documents_type_reference ON documents (portal_type, reference);
