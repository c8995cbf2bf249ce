DROP TABLE activity_runs;
DROP TABLE activity_tags;
DROP TABLE activities;
