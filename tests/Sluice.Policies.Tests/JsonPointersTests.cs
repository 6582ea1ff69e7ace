using System.Text.Json;
using System.Text.Json.Nodes;
using Sluice.Policies.Json;

namespace Sluice.Policies.Tests;

/// <summary>JSON Pointer reads and edits as the policies use them.</summary>
public class JsonPointersTests
{
    [Theory]
    [InlineData("/a~1b", "slash")]
    [InlineData("/t~0x", "tilde")]
    [InlineData("/~01", "tilde-one")]
    [InlineData("/list/1", "second")]
    [InlineData("/dup", "last")]
    public void TryRead_DecodesEscapes_AndTakesTheLastOfRepeatedNames(string path, string expected)
    {
        using var document = JsonDocument.Parse("""{"a/b":"slash","t~x":"tilde","~1":"tilde-one","list":["first","second"],"dup":"first","dup":"last"}""");

        Assert.True(JsonPointers.TryRead(document.RootElement, JsonPointers.Parse(path, "path"), out var value));
        Assert.Equal(expected, value.GetString());
    }

    [Theory]
    [InlineData("""{"a":1,"b":2}""", false)]
    [InlineData("""{"a":1,"b":2,"a":3}""", true)]
    [InlineData("""{"a":1,"\u0061":2}""", true)]
    [InlineData("""{"x":[{"k":1},{"k":1,"k":2}]}""", true)]
    [InlineData("""{"x":{"k":1},"y":{"k":1}}""", false)]
    public void HasDuplicateNames_FindsRepeatedNames_EscapedOrNot_AtAnyDepth(string json, bool expected)
    {
        using var document = JsonDocument.Parse(json);

        Assert.Equal(expected, JsonPointers.HasDuplicateNames(document.RootElement));
    }

    [Fact]
    public void HasDuplicateNames_InLargeObjects_Too()
    {
        var members = string.Join(",", Enumerable.Range(0, 40).Select(i => $"\"m{i}\":{i}"));

        Assert.False(JsonPointers.HasDuplicateNames(JsonDocument.Parse("{" + members + "}").RootElement));
        Assert.True(JsonPointers.HasDuplicateNames(JsonDocument.Parse("{" + members + ",\"m7\":0}").RootElement));
    }

    [Fact]
    public void Remove_DecodesEscapes()
    {
        var tree = JsonNode.Parse("""{"a/b":1,"t~x":2,"keep":3}""");

        Assert.True(JsonPointers.Remove(tree, JsonPointers.Parse("/a~1b", "path")));
        Assert.True(JsonPointers.Remove(tree, JsonPointers.Parse("/t~0x", "path")));

        Assert.Equal("""{"keep":3}""", tree!.ToJsonString());
    }
}
