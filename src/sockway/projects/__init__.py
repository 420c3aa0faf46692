"""Readers of users' projects: SAM / CloudFormation / CDK output and serverless.yml, translated
into sockway's own configuration (README "Run an existing project")."""
