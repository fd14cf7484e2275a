-- Where the hosted payment page's result sends the buyer back to (an allow-listed URL).
ALTER TABLE orders ADD COLUMN return_url TEXT;
