"""CloudWatch Logs' ``FilterLogEvents`` as AWS answers it, where moto differs: ``logStreamNamePrefix`` selects the
streams (moto ignored it: ``aws logs tail --log-stream-name-prefix`` got every stream), naming both it and
``logStreamNames`` is refused, and the events of several streams always come interleaved by time (``interleaved``
is deprecated on AWS: always true)."""

import json

from moto.logs.exceptions import InvalidParameterException, ResourceNotFoundException
from moto.logs.responses import LogsResponse


def _filter_log_events(self) -> str:
    group_name, prefix = self._get_param("logGroupName"), self._get_param("logStreamNamePrefix")
    names = self._get_param("logStreamNames", [])
    if prefix is not None and names:
        raise InvalidParameterException("Cannot specify both logStreamNames and logStreamNamePrefix")
    if prefix is not None:
        group = self.logs_backend.groups.get(group_name)
        if group is None:
            raise ResourceNotFoundException()
        names = [name for name in group.streams if name.startswith(prefix)]
        if not names:
            return json.dumps({"events": [], "searchedLogStreams": []})
    events, next_token, searched = self.logs_backend.filter_log_events(
        group_name, names, self._get_param("startTime"), self._get_param("endTime"), self._get_param("limit"),
        self._get_param("nextToken"), self._get_param("filterPattern"), True)
    return json.dumps({"events": events, "nextToken": next_token, "searchedLogStreams": searched})


LogsResponse.filter_log_events = _filter_log_events
