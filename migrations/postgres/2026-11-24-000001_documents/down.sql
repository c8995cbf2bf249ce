DROP TABLE users;
DROP TABLE relations;
DROP TABLE documents;
