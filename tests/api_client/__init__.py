"""Tests of api_client: the Execution API client against the real Airflow app, and its unit parts."""
