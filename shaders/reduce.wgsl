// Workgroup-wide reductions over GROUP invocations (prepended to kernels that reduce a row).
// Every invocation of the workgroup must call them (they contain barriers), and each returns
// the result to every invocation as a uniform value.

var<workgroup> reduce_buf: array<f32, GROUP>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    reduce_buf[lid] = v;
    workgroupBarrier();
    for (var s = GROUP / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            reduce_buf[lid] = reduce_buf[lid] + reduce_buf[lid + s];
        }
        workgroupBarrier();
    }
    // A uniform value (it may steer loops that hold barriers); the load ends with a barrier.
    let r = workgroupUniformLoad(&reduce_buf[0]);
    workgroupBarrier();
    return r;
}

fn workgroup_max(lid: u32, v: f32) -> f32 {
    reduce_buf[lid] = v;
    workgroupBarrier();
    for (var s = GROUP / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            reduce_buf[lid] = max(reduce_buf[lid], reduce_buf[lid + s]);
        }
        workgroupBarrier();
    }
    // A uniform value (it may steer loops that hold barriers); the load ends with a barrier.
    let r = workgroupUniformLoad(&reduce_buf[0]);
    workgroupBarrier();
    return r;
}
