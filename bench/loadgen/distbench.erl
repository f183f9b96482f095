%% distbench is the Erlang half of distgate's benchmark (tests 6 to 8). It
%% runs on a hidden client node (plain TCP or inet_tls distribution) and takes
%% one command per line on stdin, so that the load generator can interleave
%% the paths of several clients round by round. Each command answers with
%% one line:
%%
%%   calls Label Node Round Calls MiB
%%     connects (and warms the connection with 2000 unrecorded calls and one
%%     bulk call) unless connected, times Calls sequential erpc:call round
%%     trips, each on its own, and one call carrying a binary of MiB
%%     mebibytes:
%%     RESULT Label Round TotalUs P50Ns P99Ns P999Ns BulkUs
%%
%%   setup Label Node Round MaxIter MaxMs
%%     disconnects, then repeats connect (net_kernel:connect_node), one
%%     erpc:call, disconnect (erlang:disconnect_node), timing each
%%     iteration, at most MaxIter times and for at most MaxMs (after one
%%     unrecorded iteration that loads the code on both ends):
%%     SETUP Label Round Iterations Errors TotalUs P50Ns P99Ns
%%
%%   quit
%%     halts.
%%
%% A failure answers ERROR Label Reason. "ready" is printed once at start.
-module(distbench).
-export([serve/0]).

serve() ->
    io:format("ready~n"),
    loop().

loop() ->
    case io:get_line("") of
        eof ->
            halt(0);
        {error, _} ->
            halt(1);
        Line ->
            case string:lexemes(string:trim(Line), " ") of
                ["quit"] ->
                    halt(0);
                ["calls", Label, NodeS, RoundS, CallsS, MiBS] ->
                    guard(Label, fun() ->
                        calls_round(Label, list_to_atom(NodeS), list_to_integer(RoundS),
                                    list_to_integer(CallsS), list_to_integer(MiBS))
                    end);
                ["setup", Label, NodeS, RoundS, MaxS, MaxMsS] ->
                    guard(Label, fun() ->
                        setup_round(Label, list_to_atom(NodeS), list_to_integer(RoundS),
                                    list_to_integer(MaxS), list_to_integer(MaxMsS))
                    end);
                Other ->
                    io:format("ERROR - unknown command ~p~n", [Other])
            end,
            loop()
    end.

%% guard turns a crash into an ERROR line, so one broken path does not take
%% the other paths' client down with it.
guard(Label, F) ->
    try
        F()
    catch
        C:R -> io:format("ERROR ~s ~p:~p~n", [Label, C, R])
    end.

%% connect sets the connection up and warms both ends before anything is
%% timed: small calls, and one call carrying Bin, so that no path's first
%% round pays for the allocators growing on either side. The node must
%% answer with its own name.
connect(Node, Bin) ->
    case lists:member(Node, nodes(connected)) of
        true ->
            ok;
        false ->
            case net_kernel:connect_node(Node) of
                true -> ok;
                _ -> error({cannot_connect, Node})
            end,
            lists:foreach(fun(_) -> Node = erpc:call(Node, erlang, node, [], 10000) end,
                          lists:seq(1, 2000)),
            Size = byte_size(Bin),
            Size = erpc:call(Node, erlang, byte_size, [Bin], 120000),
            ok
    end.

%% bin is the binary the bulk calls carry, made once per size: every path
%% sends the same one.
bin(MiB) ->
    case get({bin, MiB}) of
        undefined ->
            B = binary:copy(<<0:8192>>, MiB * 1024),
            put({bin, MiB}, B),
            B;
        B ->
            B
    end.

calls_round(Label, Node, R, Calls, MiB) ->
    Bin = bin(MiB),
    connect(Node, Bin),
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
    Node = erpc:call(Node, erlang, node, [], 10000),
    T1 = erlang:monotonic_time(),
    calls(Node, K - 1, [erlang:convert_time_unit(T1 - T0, native, nanosecond) | Acc]).

setup_round(Label, Node, R, Max, MaxMs) ->
    erlang:disconnect_node(Node),
    ok = once(Node),
    garbage_collect(),
    T0 = erlang:monotonic_time(),
    End = T0 + erlang:convert_time_unit(MaxMs, millisecond, native),
    {Lat, Errs} = setups(Node, Max, End, [], 0),
    TotalUs = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond),
    case Lat of
        [] ->
            io:format("ERROR ~s no iteration completed (~b errors)~n", [Label, Errs]);
        _ ->
            Sorted = list_to_tuple(lists:sort(Lat)),
            io:format("SETUP ~s ~b ~b ~b ~b ~b ~b~n",
                      [Label, R, length(Lat), Errs, TotalUs, pct(Sorted, 0.50),
                       pct(Sorted, 0.99)])
    end.

%% once is one iteration: a fresh connection, a call on it, its end. The
%% disconnect is synchronous for this node: the next connect_node sets up a
%% new connection.
once(Node) ->
    case net_kernel:connect_node(Node) of
        true ->
            Node = erpc:call(Node, erlang, node, [], 10000),
            true = erlang:disconnect_node(Node),
            ok;
        Other ->
            {error, Other}
    end.

setups(_Node, 0, _End, Acc, Errs) ->
    {Acc, Errs};
setups(Node, K, End, Acc, Errs) ->
    T0 = erlang:monotonic_time(),
    case T0 >= End of
        true ->
            {Acc, Errs};
        false ->
            Ok = try once(Node) catch _:_ -> error end,
            T1 = erlang:monotonic_time(),
            case Ok of
                ok ->
                    Ns = erlang:convert_time_unit(T1 - T0, native, nanosecond),
                    setups(Node, K - 1, End, [Ns | Acc], Errs);
                _ ->
                    erlang:disconnect_node(Node),
                    setups(Node, K - 1, End, Acc, Errs + 1)
            end
    end.

%% pct is the nearest-rank percentile of a sorted tuple.
pct(T, Q) ->
    N = tuple_size(T),
    element(max(1, min(N, ceil(Q * N))), T).
