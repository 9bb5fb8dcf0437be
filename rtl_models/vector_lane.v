// One vector-unit lane: y[i] = f(a[i], b[i], c[i]) for i < n, one element per cycle through a
// pipeline of fixed depth DEPTH; the RTL side of sim/timing.py's
// vector_cycles(n, lanes=1, latency_cycles=DEPTH) = n + DEPTH.
//
// func (int32, every result modulo 2^32):  0 ADD a + b   1 SUB a - b   2 MUL a * b
//                                          3 FMA a * b + c
// Timing, counted in rising edges after the one that accepts `start` (cycles): element i is
// read and enters stage 1 at edge i + 1, moves one stage per edge, and leaves stage DEPTH into
// y at edge i + 1 + DEPTH; the last element's write raises done (a one-cycle pulse) with
// cycles = n + DEPTH. n must be 1..MAXN (n = 0 has no element to carry the latency: done at
// the start edge, cycles = 0).
//
// Host ports: ld_we writes a[ld_addr], b[ld_addr], c[ld_addr]; rd_y reads y[rd_addr]
// (combinational).
module vector_lane #(
    parameter DEPTH = 3,
    parameter MAXN = 256,
    parameter AW = $clog2(MAXN)
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          start,
    input  wire [AW:0]   n,
    input  wire [1:0]    func,
    output reg           busy,
    output reg           done,
    output reg  [31:0]   cycles,
    // host ports
    input  wire          ld_we,
    input  wire [AW-1:0] ld_addr,
    input  wire [31:0]   ld_a,
    input  wire [31:0]   ld_b,
    input  wire [31:0]   ld_c,
    input  wire [AW-1:0] rd_addr,
    output wire [31:0]   rd_y
);
    localparam [1:0] ADD = 2'd0, SUB = 2'd1, MUL = 2'd2, FMA = 2'd3;

    reg [31:0] a [0:MAXN-1];
    reg [31:0] b [0:MAXN-1];
    reg [31:0] c [0:MAXN-1];
    reg [31:0] y [0:MAXN-1];
    assign rd_y = y[rd_addr];

    // pipeline stage s holds one element: its value, index, and whether it is valid / the last
    reg [31:0]   val  [1:DEPTH];
    reg [AW-1:0] idx  [1:DEPTH];
    reg          vld  [1:DEPTH];
    reg          last [1:DEPTH];

    reg [AW:0]   count;                    // elements of this run
    reg [AW:0]   next_i;                   // next element to issue
    reg [1:0]    op;

    wire         issue = busy && next_i < count;
    wire [AW-1:0] i_addr = next_i[AW-1:0];
    wire [31:0]  xa = a[i_addr], xb = b[i_addr], xc = c[i_addr];
    wire [31:0]  result = op == ADD ? xa + xb :
                          op == SUB ? xa - xb :
                          op == MUL ? xa * xb : xa * xb + xc;

    integer s;
    always @(posedge clk) begin
        if (ld_we) begin
            a[ld_addr] <= ld_a;
            b[ld_addr] <= ld_b;
            c[ld_addr] <= ld_c;
        end
        if (rst) begin
            busy <= 1'b0;
            done <= 1'b0;
            cycles <= 32'd0;
            for (s = 1; s <= DEPTH; s = s + 1)
                vld[s] <= 1'b0;
        end else if (!busy) begin
            done <= start && n == 0;
            if (start) begin
                busy <= n != 0;
                cycles <= 32'd0;
                count <= n;
                next_i <= 0;
                op <= func;
            end
        end else begin
            cycles <= cycles + 1;
            val[1] <= result;
            idx[1] <= i_addr;
            vld[1] <= issue;
            last[1] <= issue && next_i == count - 1;
            for (s = 2; s <= DEPTH; s = s + 1) begin
                val[s] <= val[s-1];
                idx[s] <= idx[s-1];
                vld[s] <= vld[s-1];
                last[s] <= last[s-1];
            end
            if (issue)
                next_i <= next_i + 1'b1;
            if (vld[DEPTH])
                y[idx[DEPTH]] <= val[DEPTH];
            if (vld[DEPTH] && last[DEPTH]) begin
                busy <= 1'b0;
                done <= 1'b1;
            end
        end
    end
endmodule
