using Sluice.LoadTest;

// The load harness: one executable for the load generator, the echo backend, the peer proxies written in C#, the
// fan-out servers and clients, and the chart. bench/run.sh drives it; docs/benchmarks.md explains the figures.
return args.FirstOrDefault() switch
{
    "load" => await LoadGenerator.RunAsync(Arguments.Parse(args[1..])),
    "idle" => await IdleConnections.RunAsync(Arguments.Parse(args[1..])),
    "echo" => await Servers.BareEchoAsync(Arguments.Parse(args[1..])),
    "raw-echo" => RawEchoServer.Run(Arguments.Parse(args[1..])),
    "host-echo" => await Servers.SluiceHostEchoAsync(Arguments.Parse(args[1..])),
    "sluice-proxy" => await Servers.SluiceLibraryProxyAsync(Arguments.Parse(args[1..])),
    "yarp" => await Servers.YarpAsync(Arguments.Parse(args[1..])),
    "handwritten" => await Servers.HandWrittenProxyAsync(Arguments.Parse(args[1..])),
    "fanout-server" => await FanOutServers.RunAsync(Arguments.Parse(args[1..])),
    "fanout" => FanOutClient.Run(Arguments.Parse(args[1..])),
    "recovery" => await RecoveryClient.RunAsync(Arguments.Parse(args[1..])),
    "chart" => Chart.Write(args[1], args[2]),
    "table" => Chart.Table(args[1]),
    "verdict" => Verdict.Run(args[1], Arguments.Parse(args[2..])),
    "summary" => Summary.Run(args[1..]),
    "merge" => Rounds.Merge(args[1]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        sluice-load load --url WS --connections N --size BYTES --inflight N --seconds S [--redacted]
        sluice-load idle --url WS --connections N --seconds S
        sluice-load echo|raw-echo|host-echo --port P
        sluice-load yarp|handwritten --port P --backend WS
        sluice-load fanout-server --kind sluice|signalr|bare --port P [--redis HOST:PORT] [--history SIZE]
        sluice-load fanout --url WS --kind sluice|signalr|bare|node --subscribers N --publishes N [--warmup-publishes 50] [--rate PER_S]
        sluice-load recovery --url WS --publish-url WS --clients N --missed N [--pid P] [--redis-pid P]
        sluice-load chart RESULTS.json OUT.svg
        sluice-load table RESULTS.json          (a markdown table of any results file)
        sluice-load verdict DIR [--parts "P..."] [--part P]   (issue 18's targets: MET, MISSED or n/a; DIR/verdict.md)
        sluice-load summary DIR...               (several runs: each figure, median, spread; each target in every run)
        sluice-load merge PART.jsonl             (the rounds of a part: one result per target, each figure the median)
        """);
    return 2;
}
