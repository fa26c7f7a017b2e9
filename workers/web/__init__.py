"""HTTP views on the Faust web server (`views.register_views`), registered by the replay agent."""
