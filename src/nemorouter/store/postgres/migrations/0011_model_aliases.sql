-- Other names a model answers to (`gpt-4o-mini` -> `openai/gpt-4o-mini`): each alias names one
-- model, and no alias is another model's id (checked when they are set, store/*/catalog.py).
-- (0010 is the settle-many functions' number on its branch; versions need not be contiguous.)
CREATE TABLE model_aliases (
  alias     TEXT COLLATE "C" PRIMARY KEY,
  model_id  TEXT COLLATE "C" NOT NULL REFERENCES models(id) ON DELETE CASCADE
);
CREATE INDEX model_aliases_by_model ON model_aliases (model_id);
