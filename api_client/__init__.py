"""Typed async client for Airflow's Task Execution API (see ``api_client.client``)."""
