namespace Sluice;

/// <summary>Endpoint metadata carrying a group's pipeline configuration to the endpoints inside it.</summary>
internal sealed class WebSocketGroupMetadata(WebSocketPipelineBuilder builder)
{
    public WebSocketPipelineBuilder Builder { get; } = builder;

    /// <summary>The group builders in metadata order: outer groups' conventions run before inner ones'.</summary>
    public static List<WebSocketPipelineBuilder> BuildersOf(IEnumerable<object> metadata)
    {
        var builders = new List<WebSocketPipelineBuilder>();
        foreach (var item in metadata)
        {
            if (item is WebSocketGroupMetadata group)
            {
                builders.Add(group.Builder);
            }
        }

        return builders;
    }
}
