%% distbench is the Erlang half of distgate's benchmark (test 6). It runs on a
%% hidden client node. For each target node it times Calls sequential
%% erpc:call/4 round trips (each one timed on its own) and one call carrying a
%% binary of MiB mebibytes, Rounds times, interleaved across the targets, and
%% prints one line per target and round:
%%
%%   RESULT Label Round TotalUs P50Ns P99Ns P999Ns BulkUs
-module(distbench).
-export([main/1]).

main([RoundsS, CallsS, MiBS | Specs]) ->
    Rounds = list_to_integer(RoundsS),
    Calls = list_to_integer(CallsS),
    MiB = list_to_integer(MiBS),
    Targets = [target(S) || S <- Specs],
    lists:foreach(fun({_, Node}) -> connect(Node) end, Targets),
    Bin = binary:copy(<<0:8192>>, MiB * 1024),
    lists:foreach(
      fun(R) ->
              lists:foreach(fun({Label, Node}) -> one_round(Label, Node, R, Calls, Bin) end,
                            Targets)
      end, lists:seq(1, Rounds)),
    halt(0).

target(S) ->
    [Label, Node] = string:split(S, "="),
    {Label, list_to_atom(Node)}.

%% connect sets the connection up and warms both ends before anything is
%% timed; the node must answer with its own name.
connect(Node) ->
    case net_kernel:connect_node(Node) of
        true ->
            lists:foreach(fun(_) -> Node = erpc:call(Node, erlang, node, []) end,
                          lists:seq(1, 2000));
        Other ->
            io:format("ERROR cannot connect to ~s: ~p~n", [Node, Other]),
            halt(3)
    end.

one_round(Label, Node, R, Calls, Bin) ->
    garbage_collect(),
    {TotalUs, Lat} = timer:tc(fun() -> calls(Node, Calls, []) end),
    Sorted = list_to_tuple(lists:sort(Lat)),
    Size = byte_size(Bin),
    {BulkUs, Size} = timer:tc(erpc, call, [Node, erlang, byte_size, [Bin], 120000]),
    io:format("RESULT ~s ~b ~b ~b ~b ~b ~b~n",
              [Label, R, TotalUs, pct(Sorted, 0.50), pct(Sorted, 0.99),
               pct(Sorted, 0.999), BulkUs]).

calls(_Node, 0, Acc) ->
    Acc;
calls(Node, K, Acc) ->
    T0 = erlang:monotonic_time(),
    Node = erpc:call(Node, erlang, node, []),
    T1 = erlang:monotonic_time(),
    calls(Node, K - 1, [erlang:convert_time_unit(T1 - T0, native, nanosecond) | Acc]).

%% pct is the nearest-rank percentile of a sorted tuple.
pct(T, Q) ->
    N = tuple_size(T),
    element(max(1, min(N, ceil(Q * N))), T).
