"""The price book: each company's price versions with effective dates, and the default."""
