"""``dogops promote`` and ``dogops destroy``: two CloudFormation stacks per stage (its endpoint and function; its
training infrastructure), each planned as a change set, then applied."""
