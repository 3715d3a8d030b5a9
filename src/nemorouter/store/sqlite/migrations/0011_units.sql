-- Models priced per unit (an image, a character, a second of audio, a search): what each request
-- was billed in and how many (money/usage.py). NULL and 0 for every request priced per token.
ALTER TABLE generations ADD COLUMN unit TEXT;
ALTER TABLE generations ADD COLUMN units INTEGER NOT NULL DEFAULT 0;
