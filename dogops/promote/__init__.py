"""``dogops promote`` and ``dogops destroy``: one CloudFormation stack per stage, planned as a change set, then applied."""
